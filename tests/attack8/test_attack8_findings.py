"""Attack review of issue 8 (attack8). Each test states the behaviour the issue asks for; a test
that FAILS on the reviewed commit is a finding (see the report)."""

from __future__ import annotations

import base64
import struct

import pytest
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.files.base import ContentFile

from allocations.models import Grant, SshKey
from portal.errors import PortalError
from portal.models import InstitutionalDomain, Membership, Organisation
from portal.services import membership_join_by_email_domain, membership_remove, organisation_create
from tests.factories import ApplicationFactory, MembershipFactory, UserFactory


def _s(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


# -- F1: removal is undone by confirming any e-mail address (domain auto-join) -------------------


def test_a_removed_member_does_not_come_back_by_confirming_another_address(client, db):
    app = ApplicationFactory()
    app.attachment.save("plan.pdf", ContentFile(b"%PDF-1.4 plan"), save=True)
    org = app.organisation
    domain = org.domains.first().domain
    owner = MembershipFactory(organisation=org, role=Membership.Role.OWNER).user
    teammate = UserFactory(email=f"mallory@{domain}")
    MembershipFactory(organisation=org, user=teammate)
    app.team.add(teammate)
    grant = Grant.objects.create(
        organisation=org, application=app, gpu_model="H100-80GB", gpu_count=1, gpu_hours=10,
        copay_percent=0, starts_on=app.starts_on, ends_on=app.ends_on, status="active",
    )  # fmt: skip

    membership_remove(membership=Membership.objects.get(user=teammate, organisation=org), actor=owner)
    client.force_login(teammate)
    assert client.get(f"/applications/{app.pk}/").status_code == 404

    # The removed member adds any other address (a private one) and confirms it.
    other = EmailAddress.objects.create(user=teammate, email="mallory@example.net", verified=False)
    key = EmailConfirmationHMAC(other).key
    client.post(f"/accounts/confirm-email/{key}/")
    assert EmailAddress.objects.get(pk=other.pk).verified

    # Expected: the owner's removal stands. Actual: auto-join re-adds them, and the team seat,
    # the PDF and the grant come back with it.
    regained = {
        "membership": Membership.objects.filter(user=teammate, organisation=org).exists(),
        "application": client.get(f"/applications/{app.pk}/").status_code == 200,
        "pdf": client.get(f"/applications/{app.pk}/attachment/").status_code == 200,
        "grant page": client.get(f"/grants/{grant.pk}/").status_code == 200,
        "grant member (node access)": teammate in grant.members(),
    }
    assert not any(regained.values()), regained


# -- F2: a student with an address on a listed institutional domain owns the university -----------


def test_a_student_on_a_listed_institutional_domain_does_not_capture_the_whole_university(db):
    InstitutionalDomain.objects.create(domain="bigu.ac.kr", institution="Big University")
    student = UserFactory(email="student123@bigu.ac.kr")
    fake = organisation_create(
        user=student, kind=Organisation.Kind.UNIVERSITY, name_ko="가짜대학", name_en="Student Club",
        domains=["bigu.ac.kr"],
    )  # fmt: skip
    professor = UserFactory(email="prof@bigu.ac.kr")
    membership_join_by_email_domain(user=professor)  # what confirming the address runs
    # Expected: the professor is not put under a student's self-made organisation (whose owner then
    # sees their address), and the real university can still register its domain.
    assert not Membership.objects.filter(user=professor, organisation=fake).exists()
    registrar = UserFactory(email="registrar@bigu.ac.kr")
    organisation_create(
        user=registrar, kind=Organisation.Kind.UNIVERSITY, name_ko="큰대학교", name_en="Big University",
        domains=["bigu.ac.kr"],
    )  # fmt: skip


# -- F3: SSH keys ---------------------------------------------------------------------------------


def _rsa_line_noncanonical(key) -> tuple[str, str]:
    """The same RSA public key, once as ssh-keygen writes it and once with a redundant leading
    zero in each mpint (OpenSSH's sshbuf_get_bignum2 strips those and accepts the key)."""
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    n = key.public_numbers().n
    nb = b"\x00" + n.to_bytes((n.bit_length() + 7) // 8, "big")
    alt = _s(b"ssh-rsa") + _s(b"\x00\x01\x00\x01") + _s(b"\x00" + nb)
    return line, "ssh-rsa " + base64.b64encode(alt).decode()


def test_the_same_rsa_key_is_refused_for_a_second_user_even_re_encoded(db):
    from allocations.services.keys import sshkey_add

    alice, mallory = UserFactory(), UserFactory()
    canonical, re_encoded = _rsa_line_noncanonical(rsa.generate_private_key(65537, 3072).public_key())
    sshkey_add(user=alice, text=canonical)
    with pytest.raises(PortalError):  # Expected: key_of_another_user. Actual: accepted.
        sshkey_add(user=mallory, text=re_encoded)
    assert SshKey.objects.count() == 1


@pytest.mark.parametrize(
    "point",
    [b"\x01" + b"\x00" * 31, b"\x00" * 32, b"\xec" + b"\xff" * 30 + b"\x7f"],
    ids=["identity", "order-4", "order-2"],
)
def test_a_small_order_ed25519_key_is_refused(db, point):
    """With the identity as public key, R = [S]B verifies for any message in OpenSSH's
    cofactorless ed25519 check: anyone could log in to that node account."""
    from allocations.services.keys import sshkey_add

    with pytest.raises(PortalError):
        sshkey_add(user=UserFactory(), text="ssh-ed25519 " + base64.b64encode(_s(b"ssh-ed25519") + _s(point)).decode())


def test_a_compressed_ecdsa_point_is_a_form_error_not_a_500(client, db):
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    comp = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    blob = _s(b"ecdsa-sha2-nistp256") + _s(b"nistp256") + _s(comp)
    client.force_login(UserFactory())
    response = client.post(
        "/keys/", {"name": "laptop", "public_key": "ecdsa-sha2-nistp256 " + base64.b64encode(blob).decode()}
    )
    assert response.status_code == 400
    assert not SshKey.objects.exists()


def test_an_rsa_key_larger_than_openssh_accepts_is_refused(db):
    """OpenSSH refuses RSA moduli over 16384 bits: such a key is accepted here and never works."""
    from allocations.services.keys import sshkey_add

    n = (1 << 20000) + 1
    blob = _s(b"ssh-rsa") + _s(b"\x01\x00\x01") + _s(b"\x00" + n.to_bytes((n.bit_length() + 7) // 8, "big"))
    text = "ssh-rsa " + base64.b64encode(blob).decode()
    assert len(text) < 5000  # fits the form
    with pytest.raises(PortalError):
        sshkey_add(user=UserFactory(), text=text)


# -- F8: operators with a conflict act on their own organisation's grants ------------------------


def test_staff_who_belong_to_the_organisation_do_not_resume_or_see_its_grant_in_the_admin(client, db):
    from tests.portal.test_review_admin import staff_user

    app = ApplicationFactory(status="approved")
    grant = Grant.objects.create(
        organisation=app.organisation, application=app, gpu_model="H100-80GB", gpu_count=1, gpu_hours=10,
        copay_percent=0, starts_on=app.starts_on, ends_on=app.ends_on, status="suspended",
        status_reason="unpaid invoice",
    )  # fmt: skip
    operator = staff_user("ops@ministry.go.kr", "allocations.view_grant", "allocations.change_grant")
    MembershipFactory(user=operator, organisation=app.organisation)
    client.force_login(operator)
    # Expected (the rule of Application.objects.reviewable_by applied to grants): 404 / not listed.
    assert client.get(f"/admin/allocations/grant/{grant.pk}/change/").status_code == 404


# -- F9: reviewers read each other's scores before writing their own ------------------------------


def test_a_reviewer_does_not_see_other_reviewers_scores_before_reviewing(client, db):
    from portal.services import applications as svc
    from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

    app = ApplicationFactory()
    svc.application_submit(application=app, actor=app.principal_investigator)
    first = staff_user("first@ministry.go.kr", *REVIEWER_PERMS)
    svc.review_save(
        application=app, reviewer=first, merit=1, feasibility=1, national_priority=1, resource_justification=1,
        recommendation="reject", comment="UNIQUE-FIRST-REVIEW-COMMENT",
    )  # fmt: skip
    second = staff_user("second@ministry.go.kr", *REVIEWER_PERMS)
    client.force_login(second)
    for url in [f"/admin/portal/application/{app.pk}/change/", f"/admin/portal/application/{app.pk}/review/"]:
        assert "UNIQUE-FIRST-REVIEW-COMMENT" not in client.get(url).content.decode(), url


# -- F10: link-like names that the link filter misses --------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Claim at gpu-portal.한국", "Claim at gpu-portal．com", "Claim at gpu-portal。com", "Log in at 203.0.113.7/login"],
)
def test_organisation_names_that_mail_clients_turn_into_links_are_refused(name):
    from django.core.exceptions import ValidationError

    from portal.validators import validate_no_link

    with pytest.raises(ValidationError):
        validate_no_link(name)
