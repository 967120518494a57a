"""E-mail domains cannot be squatted: webmail is never claimable, and a domain is verified only
by an operator or from the operators' list of institutional domains."""

import pytest
from allauth.account.models import EmailAddress

from portal.errors import PortalError
from portal.models import InstitutionalDomain, Membership, Organisation, OrganisationAuditLog, OrganisationDomain
from portal.services import membership_join_by_email_domain, organisation_create, organisation_domain_verify
from tests.factories import UserFactory

URL = "/organisations/new/"


def university(**overrides):
    return {"kind": "university", "name_ko": "가짜대학교", "name_en": "Fake University", **overrides}


@pytest.mark.parametrize("domain", ["gmail.com", "naver.com", "daum.net", "hanmail.net", "kakao.com", "proton.me"])
def test_a_webmail_domain_cannot_be_claimed(client, db, domain):
    user = UserFactory(email=f"someone@{domain}")
    client.force_login(user)
    response = client.post(URL, university(domains=domain), HTTP_ACCEPT_LANGUAGE="en")
    assert "public e-mail service" in response.content.decode()
    assert not Organisation.objects.exists()
    with pytest.raises(PortalError) as exc:
        organisation_create(user=user, kind="university", name_ko="가", name_en="A", domains=[domain])
    assert exc.value.code == "public_domain"


def test_operators_extend_the_webmail_list_with_a_setting(db, settings):
    settings.PUBLIC_EMAIL_DOMAINS_EXTRA = ["mail.example.kr"]
    user = UserFactory(email="x@mail.example.kr")
    with pytest.raises(PortalError):
        organisation_create(user=user, kind="university", name_ko="가", name_en="A", domains=["mail.example.kr"])


def test_a_student_address_does_not_verify_its_domain_for_a_self_made_university(db):
    """The attack: a student's address verified the university's domain, and every later user of
    that domain auto-joined the fake organisation (whose owner saw their addresses)."""
    squatter = UserFactory(email="student@real-univ.ac.kr")
    org = organisation_create(
        user=squatter, kind="university", name_ko="가짜", name_en="Fake", domains=["real-univ.ac.kr"]
    )
    assert not OrganisationDomain.objects.get(organisation=org).verified
    professor = UserFactory(email="prof@real-univ.ac.kr")
    assert membership_join_by_email_domain(user=professor, domain="real-univ.ac.kr") == []
    assert not Membership.objects.filter(user=professor).exists()


def test_a_student_on_a_listed_institutional_domain_does_not_capture_the_whole_university(db):
    """Attack review of issue 8: a student's "Student Club" on the university's listed domain was
    verified at once, professors auto-joined it, and the real university could not claim it."""
    InstitutionalDomain.objects.create(domain="bigu.ac.kr", institution="Big University")
    student = UserFactory(email="student123@bigu.ac.kr")
    club = organisation_create(
        user=student, kind=Organisation.Kind.UNIVERSITY, name_ko="가짜대학", name_en="Student Club",
        domains=["bigu.ac.kr"],
    )  # fmt: skip
    assert not OrganisationDomain.objects.get(organisation=club).verified
    professor = UserFactory(email="prof@bigu.ac.kr")
    assert membership_join_by_email_domain(user=professor, domain="bigu.ac.kr") == []
    registrar = UserFactory(email="registrar@bigu.ac.kr")
    organisation_create(
        user=registrar, kind=Organisation.Kind.UNIVERSITY, name_ko="큰대학교", name_en="Big University",
        domains=["bigu.ac.kr"],
    )  # fmt: skip


def test_an_operator_links_a_listed_domain_to_the_university_and_its_people_join(client, db):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    listed = InstitutionalDomain.objects.create(domain="listed.ac.kr", institution="Listed University")
    creator = UserFactory(email="prof@listed.ac.kr")
    org = organisation_create(user=creator, kind="university", name_ko="가", name_en="A", domains=["listed.ac.kr"])
    colleague = UserFactory(email="colleague@listed.ac.kr")
    assert not OrganisationDomain.objects.get(organisation=org).verified
    operator = UserFactory(email="operator@centre.kr", is_staff=True, is_superuser=True)
    TOTP.activate(operator, generate_totp_secret())
    client.force_login(operator)
    response = client.post(
        f"/admin/portal/institutionaldomain/{listed.pk}/change/",
        {"domain": "Listed.AC.kr", "institution": "Listed University", "organisation": org.pk, "note": ""},
    )
    assert response.status_code == 302
    assert OrganisationDomain.objects.get(organisation=org).verified
    assert OrganisationAuditLog.objects.get(organisation=org, action="domain_verified").actor == operator
    assert Membership.objects.filter(user=colleague, organisation=org).exists()


def test_an_operator_verifies_a_domain_in_the_admin_with_an_audit_row(client, db):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    owner = UserFactory(email="prof@other-univ.ac.kr")
    org = organisation_create(user=owner, kind="university", name_ko="가", name_en="A", domains=["other-univ.ac.kr"])
    waiting = UserFactory(email="waiting@other-univ.ac.kr")
    operator = UserFactory(email="operator@centre.kr", is_staff=True, is_superuser=True)
    TOTP.activate(operator, generate_totp_secret())
    client.force_login(operator)
    domain = OrganisationDomain.objects.get(organisation=org)
    client.post("/admin/portal/organisationdomain/", {"action": "verify_domains", "_selected_action": [domain.pk]})
    domain.refresh_from_db()
    assert domain.verified
    row = OrganisationAuditLog.objects.get(organisation=org, action="domain_verified")
    assert row.actor == operator
    assert Membership.objects.filter(user=waiting, organisation=org).exists()


def test_an_operator_cannot_verify_a_webmail_domain_either(db):
    org = Organisation.objects.create(kind="university", name_ko="가", name_en="A")
    domain = OrganisationDomain.objects.create(organisation=org, domain="gmail.com")
    with pytest.raises(PortalError):
        organisation_domain_verify(domain=domain)


def test_unverified_addresses_never_auto_join(db):
    InstitutionalDomain.objects.create(domain="listed.ac.kr", institution="Listed University")
    creator = UserFactory(email="prof@listed.ac.kr")
    org = organisation_create(user=creator, kind="university", name_ko="가", name_en="A", domains=["listed.ac.kr"])
    organisation_domain_verify(domain=OrganisationDomain.objects.get(organisation=org))
    pretender = UserFactory(email="nobody@listed.ac.kr", verified=False)
    assert EmailAddress.objects.filter(user=pretender, verified=False).exists()
    assert membership_join_by_email_domain(user=pretender, domain="listed.ac.kr") == []


def test_a_domain_an_operator_adds_in_the_admin_is_unverified_and_audited(client, db):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    org = Organisation.objects.create(kind="university", name_ko="가", name_en="A")
    operator = UserFactory(email="operator@centre.kr", is_staff=True, is_superuser=True)
    TOTP.activate(operator, generate_totp_secret())
    client.force_login(operator)
    for typed in ["not a domain", "gmail.com"]:
        response = client.post("/admin/portal/organisationdomain/add/", {"organisation": org.pk, "domain": typed})
        assert response.status_code == 200, typed  # the form again, with the error
    response = client.post(
        "/admin/portal/organisationdomain/add/", {"organisation": org.pk, "domain": " A-Univ.AC.kr."}
    )
    assert response.status_code == 302
    assert not OrganisationDomain.objects.get(domain="a-univ.ac.kr").verified
    assert OrganisationAuditLog.objects.get(organisation=org, action="domain_added").actor == operator
