import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail, signing

from portal.models import Invitation, Membership
from tests.factories import InvitationFactory, MembershipFactory, OrganisationFactory, UserFactory


@pytest.fixture
def owner(db):
    return MembershipFactory(role=Membership.Role.OWNER)


def invite(client, jobs, membership, email, role="member"):
    client.force_login(membership.user)
    with jobs.committed():
        response = client.post(
            f"/organisations/{membership.organisation_id}/invitations/", {"email": email, "role": role}
        )
    return response


def link_from(message) -> str:
    return re.search(r"https?://[^/\s]+(/organisations/invitations/[^\s]+/)", message.body).group(1)


def test_an_owner_invites_by_mail_and_the_invitee_joins_with_the_role(client, jobs, owner):
    response = invite(client, jobs, owner, "Newcomer@Example.ac.kr", role="billing")
    assert response.status_code == 302
    jobs.run()
    assert mail.outbox[0].to == ["newcomer@example.ac.kr"]
    link = link_from(mail.outbox[0])

    newcomer = UserFactory(email="newcomer@example.ac.kr")
    client.force_login(newcomer)
    page = client.get(link)
    assert page.status_code == 200
    assert owner.organisation.name_ko in page.content.decode()
    response = client.post(link)
    assert response.status_code == 302
    membership = Membership.objects.get(user=newcomer, organisation=owner.organisation)
    assert membership.role == Membership.Role.BILLING
    assert client.get(f"/organisations/{owner.organisation_id}/").status_code == 200


def test_an_invitation_works_once(client, jobs, owner):
    invite(client, jobs, owner, "once@example.ac.kr")
    jobs.run()
    link = link_from(mail.outbox[0])
    client.force_login(UserFactory(email="once@example.ac.kr"))
    client.post(link)

    again = client.post(link)
    assert again.status_code == 400
    assert "already been used" in again.content.decode() or "이미 사용" in again.content.decode()
    assert Membership.objects.filter(organisation=owner.organisation).count() == 2


def test_an_invitation_expires_after_seven_days(client, owner, monkeypatch):
    invitation = InvitationFactory(organisation=owner.organisation, email="late@example.ac.kr")
    from portal.services import invitation_token

    token = invitation_token(invitation)
    client.force_login(UserFactory(email="late@example.ac.kr"))
    real_time = signing.time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() + 7 * 86400 + 60)
    response = client.post(f"/organisations/invitations/{token}/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert not Membership.objects.filter(user__email="late@example.ac.kr").exists()


@pytest.mark.parametrize("token", ["garbage", "1:abc:def", "%00", "x" * 300])
def test_malformed_or_forged_links_get_a_clear_message(client, user, token):
    client.force_login(user)
    response = client.get(f"/organisations/invitations/{token}/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert "not valid" in response.content.decode()


def test_a_link_for_another_address_cannot_be_used(client, owner):
    invitation = InvitationFactory(organisation=owner.organisation, email="intended@example.ac.kr")
    from portal.services import invitation_token

    client.force_login(UserFactory(email="someone-else@example.ac.kr"))
    response = client.post(f"/organisations/invitations/{invitation_token(invitation)}/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert "intended@example.ac.kr" in response.content.decode()
    assert Invitation.objects.get().accepted_at is None


def test_an_unverified_address_cannot_accept(client, owner):
    invitation = InvitationFactory(organisation=owner.organisation, email="unverified@example.ac.kr")
    from portal.services import invitation_token

    client.force_login(UserFactory(email="unverified@example.ac.kr", verified=False))
    client.post(f"/organisations/invitations/{invitation_token(invitation)}/")
    assert Invitation.objects.get().accepted_at is None
    assert not EmailAddress.objects.filter(verified=True, email="unverified@example.ac.kr").exists()


def test_a_plain_member_cannot_invite(client, jobs, owner):
    member = MembershipFactory(organisation=owner.organisation, role=Membership.Role.MEMBER)
    response = invite(client, jobs, member, "friend@example.ac.kr")
    assert response.status_code == 400
    assert not Invitation.objects.exists()
    jobs.run()
    assert mail.outbox == []


def test_a_bad_address_keeps_the_form_with_an_error(client, jobs, owner):
    client.cookies["django_language"] = "en"
    response = invite(client, jobs, owner, "not-an-address")
    assert response.status_code == 400
    body = response.content.decode()
    assert "Enter a valid email address" in body
    assert 'value="not-an-address"' in body


def test_another_organisations_owner_cannot_invite_here(client, jobs, owner):
    stranger = MembershipFactory(organisation=OrganisationFactory(), role=Membership.Role.OWNER)
    client.force_login(stranger.user)
    response = client.post(f"/organisations/{owner.organisation_id}/invitations/", {"email": "x@y.kr", "role": "owner"})
    assert response.status_code == 404
    assert not Invitation.objects.exists()


def test_invitations_are_limited_per_inviter_and_per_organisation(client, jobs, owner, settings):
    settings.INVITATIONS_PER_INVITER_PER_DAY = 3
    settings.INVITATIONS_PER_ORGANISATION_PER_DAY = 5
    for n in range(3):
        assert invite(client, jobs, owner, f"a{n}@example.ac.kr").status_code == 302
    client.cookies["django_language"] = "en"
    refused = invite(client, jobs, owner, "a3@example.ac.kr")
    assert refused.status_code == 400
    assert "You have sent 3 invitations in the last 24 hours" in refused.content.decode()
    second_owner = MembershipFactory(organisation=owner.organisation, role=Membership.Role.OWNER)
    for n in range(2):
        assert invite(client, jobs, second_owner, f"b{n}@example.ac.kr").status_code == 302
    client.cookies["django_language"] = "en"
    refused = invite(client, jobs, second_owner, "b2@example.ac.kr")
    assert "This organisation has sent 5 invitations" in refused.content.decode()
    assert Invitation.objects.count() == 5


def test_an_invitation_mail_carries_no_link_but_the_invitation(client, jobs, db):
    """An organisation named like a link is refused; an old one is defanged in the mail."""
    client.force_login(UserFactory())
    response = client.post(
        "/organisations/new/",
        {"kind": "public_agency", "name_ko": "당첨 확인 http://evil.example", "name_en": "Claim at evil.example"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert "cannot contain a web address" in response.content.decode()
    legacy = MembershipFactory(
        role=Membership.Role.OWNER, organisation=OrganisationFactory(name_ko="상금 www.evil.example 방문")
    )
    invite(client, jobs, legacy, "victim@example.ac.kr")
    jobs.run()
    message = mail.outbox[-1]
    assert "www.evil.example" not in message.body and "www.evil.example" not in message.subject
    assert "www[.]evil[.]example" in message.body
    assert re.findall(r"https?://\S+", message.body) == [re.search(r"https?://\S+", message.body).group(0)]
    assert "/organisations/invitations/" in message.body


@pytest.mark.parametrize(
    "name",
    [
        "Claim at gpu-portal.한국",
        "Claim at gpu-portal．com",
        "Claim at gpu-portal。com",
        "Claim at ｇｐｕ-portal．ｃｏｍ",
        "Log in at 203.0.113.7/login",
        "Visit gpu-portal.xn--3e0b707e",
    ],
)
def test_organisation_names_that_mail_clients_turn_into_links_are_refused(name):
    """Attack review of issue 8: internationalised TLDs, full-width or ideographic dots and bare
    IP addresses slipped past the link filter."""
    from django.core.exceptions import ValidationError

    from portal.validators import validate_no_link

    with pytest.raises(ValidationError):
        validate_no_link(name)


@pytest.mark.parametrize("name", ["서울대학교 물리학과", "Dept. of Physics", "K.I.S.T.", "LG AI연구원", "v2.0 Lab"])
def test_ordinary_organisation_names_pass_the_link_filter(name):
    from portal.validators import validate_no_link

    validate_no_link(name)


def test_the_inviters_address_is_defanged_in_the_invitation_mail(client, jobs, db):
    """The inviter's own address is text in a mail to a stranger: no clickable link in it."""
    inviter = MembershipFactory(role=Membership.Role.OWNER, user=UserFactory(email="claim.gpu-portal.com@evil.example"))
    invite(client, jobs, inviter, "victim@example.ac.kr")
    jobs.run()
    body = mail.outbox[-1].body
    assert "claim.gpu-portal.com@evil.example" not in body
    assert "claim[.]gpu-portal[.]com[at]evil[.]example" in body
