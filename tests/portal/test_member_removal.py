"""Removing someone from an organisation (or leaving) ends their access to its applications,
attachments and grants; the principal investigator's role is passed on first."""

import pytest
from django.core.files.base import ContentFile

from allocations.models import Grant
from portal.errors import PortalError
from portal.models import Application, Membership, OrganisationAuditLog
from portal.services import application_change_pi, membership_remove
from tests.factories import ApplicationFactory, MembershipFactory


@pytest.fixture
def app(db):
    application = ApplicationFactory()
    application.attachment.save("plan.pdf", ContentFile(b"%PDF-1.4 plan"), save=True)
    return application


@pytest.fixture
def owner(app):
    return MembershipFactory(organisation=app.organisation, role=Membership.Role.OWNER).user


def test_a_removed_team_member_loses_the_application_and_its_pdf(client, app, owner):
    teammate = MembershipFactory(organisation=app.organisation).user
    app.team.add(teammate)
    client.force_login(teammate)
    assert client.get(f"/applications/{app.pk}/").status_code == 200
    assert client.get(f"/applications/{app.pk}/attachment/").status_code == 200

    membership_remove(membership=Membership.objects.get(user=teammate), actor=owner)

    assert client.get(f"/applications/{app.pk}/").status_code == 404
    assert client.get(f"/applications/{app.pk}/attachment/").status_code == 404
    assert app.title not in client.get("/applications/").content.decode()
    row = OrganisationAuditLog.objects.get(user=teammate, action="member_removed")
    assert row.actor == owner


def test_a_removed_team_member_loses_the_grant_page_and_is_no_grant_member(client, app, owner):
    teammate = MembershipFactory(organisation=app.organisation).user
    app.team.add(teammate)
    grant = Grant.objects.create(
        organisation=app.organisation, application=app, gpu_model="H100-80GB", gpu_count=1, gpu_hours=10,
        copay_percent=0, starts_on=app.starts_on, ends_on=app.ends_on, status="active",
    )  # fmt: skip
    client.force_login(teammate)
    assert client.get(f"/grants/{grant.pk}/").status_code == 200
    membership_remove(membership=Membership.objects.get(user=teammate), actor=owner)
    assert client.get(f"/grants/{grant.pk}/").status_code == 404
    assert teammate not in grant.members()
    assert not Grant.objects.of_member(teammate).exists()
    assert app.principal_investigator in grant.members()


def test_the_principal_investigator_cannot_leave_before_the_role_is_passed_on(client, app, owner):
    pi = app.principal_investigator
    pi_membership = Membership.objects.get(user=pi, organisation=app.organisation)
    with pytest.raises(PortalError) as exc:
        membership_remove(membership=pi_membership, actor=pi)
    assert exc.value.code == "leads_applications"
    with pytest.raises(PortalError):
        membership_remove(membership=pi_membership, actor=owner)

    client.force_login(pi)
    response = client.post(
        f"/organisations/{app.organisation_id}/members/{pi_membership.pk}/", {"remove": "1"},
        follow=True, HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    assert "pass that role to another member" in response.content.decode()
    assert Membership.objects.filter(pk=pi_membership.pk).exists()


def test_an_owner_passes_the_role_on_and_the_old_pi_then_leaves_without_the_application(client, app, owner):
    pi = app.principal_investigator
    successor = MembershipFactory(organisation=app.organisation).user
    app.team.add(successor)
    client.force_login(owner)
    page = client.get(f"/applications/{app.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Change the principal investigator" in page
    client.post(f"/applications/{app.pk}/principal-investigator/", {"principal_investigator": successor.pk})
    app.refresh_from_db()
    assert app.principal_investigator == successor
    assert successor not in app.team.all()
    assert OrganisationAuditLog.objects.filter(action="pi_changed", user=successor, actor=owner).exists()

    membership_remove(membership=Membership.objects.get(user=pi, organisation=app.organisation), actor=pi)
    client.force_login(pi)
    assert client.get(f"/applications/{app.pk}/").status_code == 404
    # The old PI cannot withdraw the organisation's application any more.
    assert client.post(f"/applications/{app.pk}/withdraw/", {"reason": "spite"}).status_code == 404
    app.refresh_from_db()
    assert app.status == Application.Status.DRAFT


def test_only_owners_change_the_pi_and_only_to_a_current_member(app, owner):
    stranger = MembershipFactory().user
    with pytest.raises(PortalError):
        application_change_pi(application=app, new_pi=stranger, actor=owner)
    member = MembershipFactory(organisation=app.organisation).user
    with pytest.raises(PortalError):
        application_change_pi(application=app, new_pi=member, actor=app.principal_investigator)
    assert Application.objects.get(pk=app.pk).principal_investigator != member


def test_a_pi_removed_behind_the_services_back_cannot_withdraw(app, owner):
    """Access follows membership at every request, and the service re-checks it too."""
    from portal.services.applications import application_withdraw

    Membership.objects.filter(user=app.principal_investigator).delete()
    with pytest.raises(PortalError):
        application_withdraw(application=app, actor=app.principal_investigator)


def test_visible_to_uses_subqueries_not_a_join_with_distinct(app, owner, django_assert_num_queries):
    sql = str(Application.objects.visible_to(owner).query).upper()
    assert "DISTINCT" not in sql and "EXISTS" in sql
    grant_sql = str(Grant.objects.visible_to(owner).query).upper()
    assert "DISTINCT" not in grant_sql and "EXISTS" in grant_sql
    with django_assert_num_queries(1):
        assert list(Application.objects.visible_to(owner)) == [app]


def test_a_removed_member_does_not_come_back_by_confirming_another_address(client, app, owner):
    """Attack review of issue 8: confirming any address re-ran the domain auto-join for every
    verified address, and the team seat left behind brought back the application, its PDF and
    the grant."""
    from allauth.account.models import EmailAddress, EmailConfirmationHMAC

    from tests.factories import UserFactory

    org = app.organisation
    domain = org.domains.first().domain
    teammate = UserFactory(email=f"mallory@{domain}")
    MembershipFactory(organisation=org, user=teammate)
    app.team.add(teammate)
    grant = Grant.objects.create(
        organisation=org, application=app, gpu_model="H100-80GB", gpu_count=1, gpu_hours=10,
        copay_percent=0, starts_on=app.starts_on, ends_on=app.ends_on, status="active",
    )  # fmt: skip

    membership_remove(membership=Membership.objects.get(user=teammate, organisation=org), actor=owner)
    assert not app.team.filter(pk=teammate.pk).exists()  # the seat goes with the membership

    client.force_login(teammate)
    for address in ["mallory@example.net", f"mallory2@{domain}"]:  # a private one, and one on the domain
        other = EmailAddress.objects.create(user=teammate, email=address, verified=False)
        client.post(f"/accounts/confirm-email/{EmailConfirmationHMAC(other).key}/")
        assert EmailAddress.objects.get(pk=other.pk).verified

    assert not Membership.objects.filter(user=teammate, organisation=org).exists()
    assert client.get(f"/applications/{app.pk}/").status_code == 404
    assert client.get(f"/applications/{app.pk}/attachment/").status_code == 404
    assert client.get(f"/grants/{grant.pk}/").status_code == 404
    assert teammate not in grant.members()


def test_confirming_an_address_joins_only_the_organisation_of_its_own_domain(client, db):
    from allauth.account.models import EmailAddress, EmailConfirmationHMAC

    from tests.factories import OrganisationDomainFactory, UserFactory

    first = OrganisationDomainFactory(domain="first-univ.ac.kr", verified=True)
    second = OrganisationDomainFactory(domain="second-univ.ac.kr", verified=True)
    user = UserFactory(email="kim@first-univ.ac.kr")
    assert not Membership.objects.filter(user=user).exists()
    address = EmailAddress.objects.create(user=user, email="kim@second-univ.ac.kr", verified=False)
    client.force_login(user)
    client.post(f"/accounts/confirm-email/{EmailConfirmationHMAC(address).key}/")
    assert list(Membership.objects.filter(user=user).values_list("organisation", flat=True)) == [second.organisation_id]
    assert first.organisation_id != second.organisation_id


@pytest.mark.django_db(transaction=True)
def test_a_member_removed_while_becoming_pi_does_not_end_up_pi_of_an_organisation_they_left(monkeypatch):
    """Attack review of issue 8: application_change_pi checked the new PI's membership without
    locking it, membership_remove checked "leads applications" before that commit: both won."""
    import threading
    import time

    from django.db import connection

    from portal.services import memberships as msvc

    app = ApplicationFactory()
    owner = MembershipFactory(organisation=app.organisation, role=Membership.Role.OWNER).user
    successor_membership = MembershipFactory(organisation=app.organisation)
    successor = successor_membership.user
    real_audit = msvc.audit

    def slow_audit(**kwargs):
        if kwargs.get("action") == OrganisationAuditLog.Action.PI_CHANGED:
            time.sleep(1.0)  # change_pi has checked the membership, not yet committed
        return real_audit(**kwargs)

    monkeypatch.setattr(msvc, "audit", slow_audit)

    def change() -> None:
        msvc.application_change_pi(application=app, new_pi=successor, actor=owner)
        connection.close()

    def remove() -> None:
        time.sleep(0.3)
        try:
            msvc.membership_remove(membership=successor_membership, actor=successor)
        except PortalError:
            pass  # refused: they lead the application now
        connection.close()

    threads = [threading.Thread(target=change), threading.Thread(target=remove)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.refresh_from_db()
    assert app.principal_investigator == successor
    assert Membership.objects.filter(user=successor, organisation=app.organisation).exists()
