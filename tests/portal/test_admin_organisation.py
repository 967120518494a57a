"""An organisation's admin page shows its latest members and audit rows as read-only tables (no
form per row: issue 13), each with a link to the admin list of all of them, and only to staff
who may view those rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import Membership, OrganisationAuditLog
from tests.factories import MembershipFactory, OrganisationFactory, UserFactory
from tests.portal.test_review_admin import staff_user

pytestmark = pytest.mark.django_db

EXTRA = 5  # members beyond the 50 shown


@pytest.fixture
def organisation():
    """An organisation with 55 members (joined in order, one a day) and an audit row for each;
    beside it another organisation with one member."""
    org = OrganisationFactory(name_en="Big Lab", name_ko="큰 연구실")
    start = timezone.now() - timedelta(days=100)
    for i in range(50 + EXTRA):
        user = UserFactory(email=f"member{i:02d}@biglab.ac.kr")
        when = start + timedelta(days=i)
        MembershipFactory(user=user, organisation=org, role=Membership.Role.MEMBER, created_at=when)
        OrganisationAuditLog.objects.create(
            organisation=org, action=OrganisationAuditLog.Action.MEMBER_JOINED, actor=user, user=user,
            new_value="member", reason=f"joined as number {i:02d}", created_at=when,
        )  # fmt: skip
    MembershipFactory(user=UserFactory(email="outsider@elsewhere.ac.kr"))
    return org


def page(client, user, org) -> str:
    client.force_login(user)
    response = client.get(f"/admin/portal/organisation/{org.pk}/change/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    return response.content.decode()


def members_link(org) -> str:
    return f'href="/admin/portal/membership/?organisation__id__exact={org.pk}"'


def audit_link(org) -> str:
    return f'href="/admin/portal/organisationauditlog/?organisation__id__exact={org.pk}"'


def test_the_page_lists_the_latest_50_members_and_audit_rows_and_links_to_all_of_them(client, organisation):
    operator = staff_user(
        "ops@centre.kr", "portal.view_organisation", "portal.view_membership", "portal.view_organisationauditlog"
    )
    body = page(client, operator, organisation)
    assert "member54@biglab.ac.kr" in body and "member05@biglab.ac.kr" in body  # the newest 50
    assert "member04@biglab.ac.kr" not in body  # the oldest five only in the full list
    assert "joined as number 54" in body and "joined as number 04" not in body
    assert "Member joined" in body  # the action's label, not its code
    assert "outsider@elsewhere.ac.kr" not in body
    assert 'name="memberships-' not in body and 'name="audit_log-' not in body  # no inline forms
    assert members_link(organisation) in body and audit_link(organisation) in body

    # The links list every row of this organisation, and only those.
    members = client.get(f"/admin/portal/membership/?organisation__id__exact={organisation.pk}&p=2").content.decode()
    assert "member04@biglab.ac.kr" in members and "outsider@elsewhere.ac.kr" not in members
    log = client.get(f"/admin/portal/organisationauditlog/?organisation__id__exact={organisation.pk}&p=2")
    assert log.status_code == 200 and "member04@biglab.ac.kr" in log.content.decode()


def test_staff_see_only_the_tables_whose_rows_they_may_view(client, organisation):
    """Without the view permission on memberships (or on the audit log) neither the rows nor the
    link are shown, and the list behind the link refuses them."""
    neither = staff_user("neither@centre.kr", "portal.view_organisation")
    body = page(client, neither, organisation)
    assert "member54@biglab.ac.kr" not in body and "joined as number" not in body
    assert members_link(organisation) not in body and audit_link(organisation) not in body
    assert client.get(f"/admin/portal/membership/?organisation__id__exact={organisation.pk}").status_code == 403

    members_only = staff_user("members@centre.kr", "portal.view_organisation", "portal.view_membership")
    body = page(client, members_only, organisation)
    assert "member54@biglab.ac.kr" in body and members_link(organisation) in body
    assert "joined as number" not in body and audit_link(organisation) not in body

    audit_only = staff_user("audit@centre.kr", "portal.view_organisation", "portal.view_organisationauditlog")
    body = page(client, audit_only, organisation)
    assert "joined as number 54" in body and audit_link(organisation) in body
    assert members_link(organisation) not in body and "<td>member54@biglab.ac.kr</td><td>Member</td>" not in body


def test_memberships_are_never_added_changed_or_deleted_through_the_admin(client, organisation):
    """Roles and removals go through the portal's services (audit rows, node access): the
    membership list is read-only even for a superuser."""
    admin = UserFactory(email="root@centre.kr", is_staff=True, is_superuser=True)
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    TOTP.activate(admin, generate_totp_secret())
    client.force_login(admin)
    membership = Membership.objects.filter(organisation=organisation).latest("pk")
    url = f"/admin/portal/membership/{membership.pk}/change/"
    assert client.get(url).status_code == 200  # viewable
    client.post(url, {"role": Membership.Role.OWNER, "user": membership.user_id, "organisation": organisation.pk})
    client.post(f"/admin/portal/membership/{membership.pk}/delete/", {"post": "yes"})
    membership.refresh_from_db()
    assert membership.role == Membership.Role.MEMBER
    assert client.get("/admin/portal/membership/add/").status_code == 403


def test_staff_who_may_change_the_organisation_still_save_it_and_add_pages_show_no_tables(client, organisation):
    """The tables are read-only parts of the page: saving the organisation's own fields works
    as before, and the add page (no organisation yet) has neither table."""
    editor = staff_user(
        "editor@centre.kr", "portal.view_organisation", "portal.change_organisation", "portal.add_organisation",
        "portal.view_membership", "portal.view_organisationauditlog",
    )  # fmt: skip
    client.force_login(editor)
    url = f"/admin/portal/organisation/{organisation.pk}/change/"
    response = client.post(
        url,
        {
            "kind": organisation.kind, "name_ko": "더 큰 연구실", "name_en": "Bigger Lab", "founded_on": "",
            "domains-TOTAL_FORMS": "0", "domains-INITIAL_FORMS": "0", "domains-MIN_NUM_FORMS": "0",
            "domains-MAX_NUM_FORMS": "1000", "_save": "Save",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    organisation.refresh_from_db()
    assert organisation.name_en == "Bigger Lab"
    assert Membership.objects.filter(organisation=organisation).count() == 50 + EXTRA
    add = client.get("/admin/portal/organisation/add/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "field-members" not in add and "field-audit_log" not in add
