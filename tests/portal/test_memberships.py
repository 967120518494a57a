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


@pytest.mark.django_db(transaction=True)
def test_owners_demoting_each_other_at_once_never_deadlock():
    """Two owners demote each other on real PostgreSQL connections, twelve times: each round ends
    with exactly one demotion and one clear refusal, never a deadlock (a 500)."""
    import threading

    from django.db import connection

    from portal.services import PortalError, membership_set_role

    for _round in range(12):
        a = MembershipFactory(role=Membership.Role.OWNER)
        b = MembershipFactory(organisation=a.organisation, role=Membership.Role.OWNER)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def demote(target, actor, barrier=barrier, outcomes=outcomes):
            try:
                barrier.wait()
                membership_set_role(membership=target, role=Membership.Role.MEMBER, actor=actor)
                outcomes.append("demoted")
            except PortalError as exc:
                outcomes.append(exc.code)
            except Exception as exc:  # noqa: BLE001 - a deadlock is what this test looks for
                outcomes.append(type(exc).__name__)
            finally:
                connection.close()

        threads = [
            threading.Thread(target=demote, args=(b, a.user)),
            threading.Thread(target=demote, args=(a, b.user)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcomes) in (["demoted", "last_owner"], ["demoted", "not_owner"]), outcomes
        assert Membership.objects.filter(organisation=a.organisation, role=Membership.Role.OWNER).count() == 1
