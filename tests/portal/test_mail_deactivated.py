"""A deactivated account receives nothing at all, whatever sent it: every rendered e-mail is
checked against the accounts when its job sends it, so a decision e-mail queued while the
applicant was active is not delivered once staff deactivated them (addresses of no account,
the operators' for example, still get theirs)."""

from __future__ import annotations

import logging

from allauth.account.models import EmailAddress
from django.core import mail

from portal.mail import mail_render_and_enqueue
from portal.services import applications as svc
from tests.factories import ApplicationFactory, UserFactory


def test_a_decision_mail_queued_before_the_applicant_was_deactivated_is_not_delivered(db, jobs, caplog):
    app = ApplicationFactory()
    svc.application_submit(application=app, actor=app.principal_investigator)
    approver = UserFactory(email="approver@ministry.go.kr", is_staff=True)
    app = svc.application_start_review(application=app, actor=approver)
    with jobs.committed():
        svc.application_reject(application=app, actor=approver, reason="Out of scope.")
    pi = app.principal_investigator
    pi.is_active = False
    pi.save(update_fields=["is_active"])
    with caplog.at_level(logging.WARNING, logger="portal.mail"):
        jobs.run()
    assert mail.outbox == []
    assert any(pi.email in r.getMessage() and "deactivated" in r.getMessage() for r in caplog.records)


def test_only_the_deactivated_addresses_of_a_message_are_left_out(db, jobs):
    gone = UserFactory(email="Gone@Example.ac.kr", is_active=False)
    EmailAddress.objects.create(user=gone, email="gone-second@example.ac.kr", primary=False, verified=True)
    with jobs.committed():
        for to in ("operators@localhost", gone.email.upper(), "Gone <gone-second@example.ac.kr>"):
            mail_render_and_enqueue(
                template="operators_notice", to=to, context={"subject": "s", "lines": []}, language="en"
            )
    jobs.run()
    assert [m.to for m in mail.outbox] == [["operators@localhost"]]
