"""Conflict of interest and award limits: nobody decides an application of an organisation they
belong or belonged to, or that they work on, and the call's cap and budget hold at approval."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile

from allocations.models import Grant
from portal.errors import PortalError
from portal.models import Application, Membership, OrganisationAuditLog
from portal.services import applications as svc
from portal.services import membership_remove
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory, UserFactory, award_of
from tests.portal.test_review_admin import QUEUE, REVIEWER_PERMS, staff_user


def submitted(**kwargs) -> Application:
    app = ApplicationFactory(**kwargs)
    return svc.application_submit(application=app, actor=app.principal_investigator)


@pytest.fixture
def approver(db):
    return staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")


def test_an_approver_who_left_the_organisation_still_cannot_approve_its_application(client, approver):
    """The attack: a member gets 404 in the queue, leaves the organisation, and approves."""
    app = submitted()
    MembershipFactory(user=approver, organisation=app.organisation, role=Membership.Role.MEMBER)
    client.force_login(approver)
    assert client.get(f"{QUEUE}{app.pk}/decide/").status_code == 404

    membership_remove(membership=Membership.objects.get(user=approver), actor=approver)
    assert OrganisationAuditLog.objects.filter(user=approver, action="member_left").exists()

    assert client.get(f"{QUEUE}{app.pk}/decide/").status_code == 404
    assert app.title not in client.get(QUEUE).content.decode()
    with pytest.raises(PortalError) as exc:
        svc.application_start_review(application=app, actor=approver)
    assert exc.value.code == "conflict_of_interest"
    other = UserFactory(is_staff=True)
    svc.application_start_review(application=app, actor=other)
    with pytest.raises(PortalError) as exc:
        svc.application_approve(application=app, actor=approver, **award_of(app))
    assert exc.value.code == "conflict_of_interest"
    assert not Grant.objects.exists()


def test_a_removed_member_cannot_review_either(approver):
    app = submitted()
    membership = MembershipFactory(user=approver, organisation=app.organisation)
    owner = MembershipFactory(organisation=app.organisation, role=Membership.Role.OWNER).user
    membership_remove(membership=membership, actor=owner)
    with pytest.raises(PortalError) as exc:
        svc.review_save(
            application=app, reviewer=approver, merit=5, feasibility=5, national_priority=5,
            resource_justification=5, recommendation="approve",
        )  # fmt: skip
    assert exc.value.code == "conflict_of_interest"
    assert not Application.objects.reviewable_by(approver).filter(pk=app.pk).exists()


def test_the_principal_investigator_and_the_team_never_decide_even_without_membership(approver):
    app = submitted()
    app.principal_investigator.is_staff = True
    app.principal_investigator.save()
    Membership.objects.filter(user=app.principal_investigator).delete()  # e.g. an old, unlogged membership
    with pytest.raises(PortalError):
        svc.application_start_review(application=app, actor=app.principal_investigator)
    teammate = UserFactory(is_staff=True)
    app.team.add(teammate)
    with pytest.raises(PortalError):
        svc.application_start_review(application=app, actor=teammate)
    assert list(Application.objects.reviewable_by(teammate)) == []


def test_the_creator_of_the_organisation_never_decides(approver):
    app = submitted()
    app.organisation.created_by = approver
    app.organisation.save()
    with pytest.raises(PortalError):
        svc.application_start_review(application=app, actor=approver)


def test_the_cap_per_application_holds_at_approval(approver):
    """95,000 GPU-hours against a 20,000 cap: refused without the override permission."""
    call = CallFactory(cap_gpu_hours=20000, budgets={"H100-80GB": 200000})
    app = svc.application_start_review(application=submitted(call=call), actor=approver)
    with pytest.raises(PortalError) as exc:
        svc.application_approve(
            application=app, actor=approver, **award_of(app, gpu_hours=95000), override_reason="Because I can"
        )
    assert exc.value.code == "over_cap"
    assert "20000" in exc.value.message
    assert not Grant.objects.exists()


def test_an_override_is_an_explicit_logged_act_of_its_own_permission(approver):
    call = CallFactory(cap_gpu_hours=20000, budgets={"H100-80GB": 200000})
    app = svc.application_start_review(application=submitted(call=call), actor=approver)
    approver.user_permissions.add(Permission.objects.get(codename="override_award_limits"))
    approver = type(approver).objects.get(pk=approver.pk)
    with pytest.raises(PortalError) as exc:
        svc.application_approve(application=app, actor=approver, **award_of(app, gpu_hours=30000))
    assert exc.value.code == "override_reason_required"
    grant = svc.application_approve(
        application=app, actor=approver, **award_of(app, gpu_hours=30000), override_reason="National priority"
    )
    assert grant.budget_override_reason == "National priority"
    row = OrganisationAuditLog.objects.get(action="award_override")
    assert (row.actor, row.reason, row.organisation) == (approver, "National priority", app.organisation)


def test_staff_who_belong_to_the_organisation_neither_see_nor_resume_its_grant_in_the_admin(client, db):
    """Attack review of issue 8: the grant admin ignored the conflict-of-interest rule."""
    app = ApplicationFactory(status="approved")
    grant = Grant.objects.create(
        organisation=app.organisation, application=app, gpu_model="H100-80GB", gpu_count=1, gpu_hours=10,
        copay_percent=0, starts_on=app.starts_on, ends_on=app.ends_on, status="suspended",
        status_reason="unpaid invoice",
    )  # fmt: skip
    operator = staff_user("ops@ministry.go.kr", "allocations.view_grant", "allocations.change_grant")
    MembershipFactory(user=operator, organisation=app.organisation)
    client.force_login(operator)
    # As for another missing object: the admin's "does not exist" redirect, no page.
    assert client.get(f"/admin/allocations/grant/{grant.pk}/change/").status_code in (302, 404)
    assert (
        f"/admin/allocations/grant/{grant.pk}/change/" not in client.get("/admin/allocations/grant/").content.decode()
    )
    client.post("/admin/allocations/grant/", {"action": "resume", "_selected_action": [grant.pk]})
    grant.refresh_from_db()
    assert grant.status == "suspended"
    # A colleague without the conflict sees it.
    other = staff_user("ops2@ministry.go.kr", "allocations.view_grant", "allocations.change_grant")
    client.force_login(other)
    assert client.get(f"/admin/allocations/grant/{grant.pk}/change/").status_code == 200


def _grant(app: Application) -> Grant:
    return Grant.objects.create(
        organisation=app.organisation, application=app, gpu_model="H100-80GB", gpu_count=1, gpu_hours=10,
        copay_percent=0, starts_on=app.starts_on, ends_on=app.ends_on, status="active",
    )  # fmt: skip


@pytest.mark.parametrize("order", ["", "?o=2", "?o=-4", "?o=-5", "?status__exact=active"])
def test_every_page_of_the_grant_list_leaves_out_the_grants_an_operator_has_a_conflict_with(
    client, db, monkeypatch, order
):
    """The grant list sorts and limits the grants before joining their application, organisation
    and investigator (issue 13): on every page, in every order, the conflict-of-interest rule
    still holds, and each row shows its title, investigator and organisation."""
    from allocations.admin_grants import GrantAdmin

    operator = staff_user("ops@ministry.go.kr", "allocations.view_grant")
    mine = ApplicationFactory(status="approved", title="My own lab's project")
    MembershipFactory(user=operator, organisation=mine.organisation)
    left = ApplicationFactory(status="approved", title="My old lab's project")
    membership_remove(membership=MembershipFactory(user=operator, organisation=left.organisation), actor=operator)
    others = [ApplicationFactory(status="approved", title=f"Project {i}") for i in range(5)]
    for app in (mine, left, *others):
        _grant(app)
    monkeypatch.setattr(GrantAdmin, "list_per_page", 2)  # several pages: the page's keys, then the joins
    client.force_login(operator)
    shown = ""
    for number in (1, 2, 3):
        separator = "&" if order else "?"
        response = client.get(f"/admin/allocations/grant/{order}{separator}p={number}", HTTP_ACCEPT_LANGUAGE="en")
        assert response.status_code == 200
        shown += response.content.decode()
    assert "My own lab" not in shown and "My old lab" not in shown
    for app in others:
        assert app.title in shown and app.principal_investigator.email in shown and app.organisation.name_en in shown
    grants = {int(pk) for pk in re.findall(r'href="/admin/allocations/grant/(\d+)/change/', shown)}
    assert grants == set(Grant.objects.filter(application__in=others).values_list("pk", flat=True))


@pytest.fixture
def conflicted(db):
    """An approver who once was a member of the applying organisation and left."""
    app = ApplicationFactory()
    app.attachment.save("plan.pdf", ContentFile(b"%PDF-1.4 plan"), save=True)
    svc.application_submit(application=app, actor=app.principal_investigator)
    approver = staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")
    m = MembershipFactory(user=approver, organisation=app.organisation)
    membership_remove(membership=m, actor=approver)
    return app, approver


@pytest.mark.parametrize(
    "suffix",
    ["{pk}/change/", "{pk}/review/", "{pk}/decide/", "{pk}/attachment/", "{pk}/history/", "{pk}/start-review/"],
)
def test_a_conflicted_approver_gets_404_on_every_admin_page_of_the_application(client, conflicted, suffix):
    app, approver = conflicted
    client.force_login(approver)
    url = QUEUE + suffix.format(pk=app.pk)
    assert client.get(url).status_code in (302, 404)
    if suffix == "{pk}/start-review/":
        client.post(url)
        app.refresh_from_db()
        assert app.status == "submitted"


@pytest.mark.parametrize(
    "params",
    [
        {"q": "Korean foundation"},
        {"organisation__memberships__user": "{uid}"},
        {"organisation__created_by": "{uid}"},
        {"principal_investigator__email__startswith": "pi"},
        {"status__exact": "submitted"},
    ],
)
def test_the_queue_never_lists_or_probes_a_conflicted_application(client, conflicted, params):
    app, approver = conflicted
    client.force_login(approver)
    response = client.get(QUEUE, {k: v.format(uid=approver.pk) for k, v in params.items()})
    assert response.status_code in (200, 400)
    assert app.title not in response.content.decode()


def test_a_conflicted_reviewer_cannot_act_through_the_bulk_action(client, conflicted):
    app, approver = conflicted
    client.force_login(approver)
    client.post(QUEUE, {"action": "start_review", "_selected_action": [app.pk], "select_across": "1"})
    app.refresh_from_db()
    assert app.status == "submitted"
