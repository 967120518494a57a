"""Attack review of issue 8 (attack8): the same apply form posted twice at the same moment (a
double click, two tabs), on real PostgreSQL with real concurrency."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from portal.models import Application, OutboxMessage
from tests.factories import CallFactory, MembershipFactory, OrganisationDomainFactory, UserFactory
from tests.portal.test_application_views import form_data


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(3))
def test_two_simultaneous_submits_of_one_form_make_one_application_and_one_mail(run):
    domain = OrganisationDomainFactory(domain=f"race{run}.ac.kr")
    researcher = MembershipFactory(user=UserFactory(email=f"kim@race{run}.ac.kr"), organisation=domain.organisation)
    call = CallFactory()
    data = form_data(call, researcher, submit="1")
    barrier = threading.Barrier(2)
    statuses: list = []

    def post() -> None:
        client = Client(raise_request_exception=False)
        client.force_login(researcher.user)
        barrier.wait()
        statuses.append(client.post(f"/calls/{call.pk}/apply/", data).status_code)
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [302, 302], statuses
    assert Application.objects.count() == 1
    assert Application.objects.get().status == "submitted"
    mails = OutboxMessage.objects.filter(func__contains="mail").count()
    assert mails == 1, mails


@pytest.mark.django_db(transaction=True)
def test_a_member_removed_while_becoming_pi_does_not_end_up_pi_of_an_organisation_they_left(monkeypatch):
    """application_change_pi checks the new PI's membership without locking it; membership_remove
    checks "leads applications" without locking the applications. Interleaved, both commit."""
    import time

    from portal.models import Membership, OrganisationAuditLog
    from portal.services import memberships as msvc
    from tests.factories import ApplicationFactory

    app = ApplicationFactory()
    owner = MembershipFactory(organisation=app.organisation, role=Membership.Role.OWNER).user
    successor_membership = MembershipFactory(organisation=app.organisation)
    successor = successor_membership.user
    real_audit = msvc.audit

    def slow_audit(**kwargs):
        if kwargs.get("action") == OrganisationAuditLog.Action.PI_CHANGED:
            time.sleep(1.0)  # change_pi has checked membership, not yet committed
        return real_audit(**kwargs)

    monkeypatch.setattr(msvc, "audit", slow_audit)
    errors: list = []

    def change() -> None:
        try:
            msvc.application_change_pi(application=app, new_pi=successor, actor=owner)
        except Exception as exc:  # noqa: BLE001
            errors.append(("change", exc))
        connection.close()

    def remove() -> None:
        time.sleep(0.3)
        try:
            msvc.membership_remove(membership=successor_membership, actor=successor)
        except Exception as exc:  # noqa: BLE001
            errors.append(("remove", exc))
        connection.close()

    threads = [threading.Thread(target=change), threading.Thread(target=remove)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.refresh_from_db()
    is_member = Membership.objects.filter(user=app.principal_investigator, organisation=app.organisation).exists()
    assert is_member, ("PI is not a member", app.principal_investigator, errors)
