import pytest

from portal.models import Membership
from tests.factories import MembershipFactory


@pytest.fixture
def owner(db):
    return MembershipFactory(role=Membership.Role.OWNER)


def url(m):
    return f"/organisations/{m.organisation_id}/members/{m.pk}/"


def test_an_owner_changes_a_role_and_removes_a_member(client, owner):
    member = MembershipFactory(organisation=owner.organisation)
    client.force_login(owner.user)
    client.post(url(member), {"role": "billing"})
    member.refresh_from_db()
    assert member.role == "billing"
    client.post(url(member), {"role": "billing", "remove": "1"})
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_the_last_owner_can_neither_step_down_nor_leave(client, owner):
    client.force_login(owner.user)
    response = client.post(url(owner), {"role": "member"}, follow=True, HTTP_ACCEPT_LANGUAGE="en")
    assert "at least one owner" in response.content.decode()
    client.post(url(owner), {"remove": "1"})
    owner.refresh_from_db()
    assert owner.role == "owner"


def test_a_member_cannot_change_roles_but_can_leave(client, owner):
    member = MembershipFactory(organisation=owner.organisation)
    client.force_login(member.user)
    client.post(url(member), {"role": "owner"})
    member.refresh_from_db()
    assert member.role == "member"
    client.post(url(owner), {"remove": "1"})
    assert Membership.objects.filter(pk=owner.pk).exists()
    client.post(url(member), {"remove": "1"})
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_memberships_of_another_organisation_are_404(client, owner):
    stranger = MembershipFactory(role=Membership.Role.OWNER)
    client.force_login(stranger.user)
    assert client.post(url(owner), {"role": "member"}).status_code == 404
    mixed = f"/organisations/{stranger.organisation_id}/members/{owner.pk}/"
    assert client.post(mixed, {"remove": "1"}).status_code == 404
    assert Membership.objects.filter(pk=owner.pk, role="owner").exists()
