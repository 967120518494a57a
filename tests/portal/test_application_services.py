"""Transitions, decisions and budget safety of the application services."""

import threading
from datetime import timedelta

import django_rq
import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import connection

from allocations.models import Grant
from portal.errors import PortalError
from portal.models import Application, ApplicationEvent, Membership, OrganisationAuditLog
from portal.services import applications as svc
from tests.factories import ApplicationFactory, CallFactory, UserFactory, award_of

S = Application.Status


@pytest.fixture
def approver(db):
    return UserFactory(email="approver@ministry.go.kr", is_staff=True)


def submitted(**kwargs) -> Application:
    app = ApplicationFactory(**kwargs)
    return svc.application_submit(application=app, actor=app.principal_investigator)


def in_review(approver, **kwargs) -> Application:
    return svc.application_start_review(application=submitted(**kwargs), actor=approver)


def test_the_whole_path_records_an_event_per_transition(approver):
    app = in_review(approver)
    svc.application_return(application=app, actor=approver, reason="Explain the data pipeline.")
    svc.application_submit(application=app, actor=app.principal_investigator)
    svc.application_start_review(application=app, actor=approver)
    svc.application_approve(application=app, actor=approver, **award_of(app))
    statuses = list(app.events.values_list("old_status", "new_status"))
    assert statuses == [
        ("draft", "submitted"),
        ("submitted", "in_review"),
        ("in_review", "returned"),
        ("returned", "submitted"),
        ("submitted", "in_review"),
        ("in_review", "approved"),
    ]
    assert app.events.get(new_status="returned").reason == "Explain the data pipeline."


@pytest.mark.parametrize(
    ("start", "action"),
    [
        (S.DRAFT, "approve"),
        (S.RETURNED, "approve"),  # a submitted one is decided in one step (test_review_pages)
        (S.APPROVED, "reject"),
        (S.REJECTED, "withdraw"),
        (S.WITHDRAWN, "submit"),
        (S.IN_REVIEW, "withdraw"),
    ],
)
def test_transitions_outside_the_table_are_refused(approver, start, action):
    app = ApplicationFactory(status=start)
    calls = {
        "approve": lambda: svc.application_approve(application=app, actor=approver, **award_of(app)),
        "reject": lambda: svc.application_reject(application=app, actor=approver, reason="x"),
        "withdraw": lambda: svc.application_withdraw(application=app, actor=app.principal_investigator),
        "submit": lambda: svc.application_submit(application=app, actor=app.principal_investigator),
    }
    with pytest.raises(PortalError):
        calls[action]()
    app.refresh_from_db()
    assert app.status == start
    assert not Grant.objects.exists()


def test_reject_and_return_need_a_reason(approver):
    app = in_review(approver)
    for action in (svc.application_reject, svc.application_return):
        with pytest.raises(PortalError) as exc:
            action(application=app, actor=approver, reason="  ")
        assert exc.value.code == "reason_required"
    assert Application.objects.get(pk=app.pk).status == S.IN_REVIEW


def test_approval_with_edited_award_creates_a_pending_grant_and_queues_provisioning(approver, jobs):
    app = in_review(approver)
    with jobs.committed():
        grant = svc.application_approve(
            application=app, actor=approver, **award_of(app, gpu_count=4, gpu_hours=6000), reason="Reduced to 4 GPUs."
        )
    assert (grant.status, grant.gpu_count, grant.gpu_hours) == ("pending", 4, 6000)
    assert grant.copay_percent == app.call.copay_percent
    assert grant.organisation == app.organisation
    queued = [j.func_name for j in django_rq.get_queue("default").get_jobs()]
    assert "allocations.jobs.grant_provision_job" in queued
    jobs.run()
    assert "Approved" in mail.outbox[-1].subject or "승인" in mail.outbox[-1].subject


def test_the_applicant_is_mailed_in_their_language(approver, jobs):
    app = in_review(approver)
    app.principal_investigator.language = "en"
    app.principal_investigator.save()
    with jobs.committed():
        svc.application_reject(application=app, actor=approver, reason="Out of scope.")
    jobs.run()
    message = mail.outbox[-1]
    assert message.to == [app.principal_investigator.email]
    assert "Rejected" in message.subject
    assert "Out of scope." in message.body

    korean = in_review(approver)
    with jobs.committed():
        svc.application_reject(application=korean, actor=approver, reason="범위 밖입니다.")
    jobs.run()
    assert "반려" in mail.outbox[-1].subject


def test_an_award_over_the_remaining_budget_needs_the_override_permission_and_a_reason(approver):
    call = CallFactory(budgets={"H100-80GB": 15000})
    first = in_review(approver, call=call)
    svc.application_approve(application=first, actor=approver, **award_of(first, gpu_hours=10000))
    second = in_review(approver, call=call)
    with pytest.raises(PortalError) as exc:
        svc.application_approve(
            application=second, actor=approver, **award_of(second, gpu_hours=10000), override_reason="Priority"
        )
    assert exc.value.code == "over_budget"
    assert "5000" in exc.value.message
    approver.user_permissions.add(Permission.objects.get(codename="override_award_limits"))
    approver = type(approver).objects.get(pk=approver.pk)  # fresh permission cache
    with pytest.raises(PortalError) as exc:
        svc.application_approve(application=second, actor=approver, **award_of(second, gpu_hours=10000))
    assert exc.value.code == "override_reason_required"
    grant = svc.application_approve(
        application=second, actor=approver, **award_of(second, gpu_hours=10000), override_reason="Minister's priority"
    )
    assert grant.budget_override_reason == "Minister's priority"
    assert svc.call_remaining_gpu_hours(call) == {"H100-80GB": -5000}
    logged = OrganisationAuditLog.objects.get(action="award_override")
    assert (logged.actor, logged.reason) == (approver, "Minister's priority")


def test_a_member_of_the_applicant_organisation_cannot_review_or_decide(approver):
    app = submitted()
    Membership.objects.create(user=approver, organisation=app.organisation)
    with pytest.raises(PortalError) as exc:
        svc.application_start_review(application=app, actor=approver)
    assert exc.value.code == "conflict_of_interest"
    with pytest.raises(PortalError):
        svc.review_save(
            application=app, reviewer=approver, merit=5, feasibility=5, national_priority=5,
            resource_justification=5, recommendation="approve",
        )  # fmt: skip
    assert Application.objects.get(pk=app.pk).status == S.SUBMITTED


def test_the_first_review_starts_the_review(approver):
    app = submitted()
    svc.review_save(
        application=app, reviewer=approver, merit=4, feasibility=3, national_priority=5,
        resource_justification=4, recommendation="approve", comment="Solid.",
    )  # fmt: skip
    app.refresh_from_db()
    assert app.status == S.IN_REVIEW
    svc.review_save(
        application=app, reviewer=approver, merit=5, feasibility=3, national_priority=5,
        resource_justification=4, recommendation="approve",
    )  # fmt: skip
    assert app.reviews.get().merit == 5  # updated, not duplicated


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_never_overspend_the_call():
    """Two approvals in the same call, each fitting the budget alone but not together, race on
    real PostgreSQL connections: exactly one wins."""
    call = CallFactory(budgets={"H100-80GB": 15000})
    approvers = [UserFactory(is_staff=True), UserFactory(is_staff=True)]
    apps = []
    for _ in range(2):
        app = ApplicationFactory(call=call, gpu_hours=10000)
        svc.application_submit(application=app, actor=app.principal_investigator)
        svc.application_start_review(application=app, actor=approvers[0])
        apps.append(app)

    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(app, approver):
        try:
            barrier.wait()
            svc.application_approve(application=app, actor=approver, **award_of(app))
            outcomes.append("approved")
        except PortalError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(a, u)) for a, u in zip(apps, approvers, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(outcomes) == ["approved", "over_budget"]
    assert Grant.objects.count() == 1
    assert svc.call_remaining_gpu_hours(call) == {"H100-80GB": 5000}
    assert ApplicationEvent.objects.filter(new_status="approved").count() == 1


def test_a_grant_never_starts_before_or_ends_before_it_starts(approver):
    app = in_review(approver)
    with pytest.raises(PortalError):
        svc.application_approve(
            application=app, actor=approver, **award_of(app, ends_on=app.starts_on - timedelta(days=1))
        )
    with pytest.raises(PortalError):
        svc.application_approve(application=app, actor=approver, **award_of(app, gpu_model="A100-80GB"))
    with pytest.raises(PortalError):
        svc.application_approve(application=app, actor=approver, **award_of(app, gpu_count=9))
