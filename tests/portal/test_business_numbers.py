"""Business registration numbers: a squatter's claim never blocks the real company; only an
operator confirms a number, and moves a disputed one."""

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction

from portal.errors import PortalError
from portal.models import Organisation, OrganisationAuditLog
from portal.services import organisation_brn_confirm, organisation_brn_move, organisation_create
from portal.validators import validate_business_registration_number
from tests.factories import UserFactory

URL = "/organisations/new/"
REAL = "1208147521"  # a public number with a valid check digit


def startup(user, name="Real Startup", number=REAL) -> Organisation:
    return organisation_create(
        user=user, kind="startup", name_ko=name, name_en=name, domains=[], business_registration_number=number,
        founded_on="2023-01-01",
    )  # fmt: skip


def with_certificate(org: Organisation) -> Organisation:
    from django.core.files.base import ContentFile

    org.brn_document.save("cert.pdf", ContentFile(b"%PDF-1.4 certificate"), save=True)
    return org


@pytest.fixture
def operator(db):
    user = UserFactory(email="operator@centre.kr", is_staff=True, is_superuser=True)
    TOTP.activate(user, generate_totp_secret())
    return user


def test_a_squatters_claim_does_not_block_the_real_company(client, db):
    squatter = startup(UserFactory(), name="Squatter")
    assert squatter.brn_status == "claimed"
    founder = UserFactory()
    client.force_login(founder)
    response = client.post(
        URL, {"kind": "startup", "name_ko": "진짜", "name_en": "Real", "business_registration_number": "120-81-47521",
              "founded_on": "2023-05-01"},
    )  # fmt: skip
    assert response.status_code == 302
    real = Organisation.objects.get(name_en="Real")
    assert (real.business_registration_number, real.brn_status) == (REAL, "claimed")
    assert OrganisationAuditLog.objects.filter(organisation=real, action="brn_claimed", actor=founder).exists()


@pytest.mark.parametrize("number", ["0000000000", "0008147521", "1200047521"])
def test_unissued_numbers_are_refused_with_a_clear_error(client, db, number):
    from django.utils import translation

    with translation.override("en"), pytest.raises(ValidationError, match="not an issued"):
        validate_business_registration_number(number)
    client.force_login(UserFactory())
    response = client.post(
        URL, {"kind": "startup", "name_ko": "가", "name_en": "A", "business_registration_number": number,
              "founded_on": "2023-05-01"}, HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    assert "not an issued business registration number" in response.content.decode()
    assert not Organisation.objects.exists()


def test_the_owner_uploads_the_certificate_and_an_operator_confirms(client, operator):
    owner = UserFactory()
    org = startup(owner)
    client.force_login(owner)
    page = client.get(f"/organisations/{org.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "claimed, awaiting confirmation" in page
    pdf = SimpleUploadedFile("cert.pdf", b"%PDF-1.4 certificate", content_type="application/pdf")
    client.post(f"/organisations/{org.pk}/business-registration/", {"document": pdf})
    org.refresh_from_db()
    assert org.brn_document
    assert OrganisationAuditLog.objects.filter(organisation=org, action="brn_document_uploaded").exists()

    client.force_login(operator)
    client.post("/admin/portal/organisation/", {"action": "confirm_business_numbers", "_selected_action": [org.pk]})
    org.refresh_from_db()
    assert org.brn_status == "verified"
    assert OrganisationAuditLog.objects.get(organisation=org, action="brn_confirmed").actor == operator
    change_page = client.get(f"/admin/portal/organisation/{org.pk}/change/").content.decode()
    assert f"/admin/portal/organisation/{org.pk}/certificate/" in change_page
    download = client.get(f"/admin/portal/organisation/{org.pk}/certificate/")
    assert b"".join(download.streaming_content).startswith(b"%PDF-")
    client.force_login(owner)  # not staff: the admin sends them to sign in
    assert client.get(f"/admin/portal/organisation/{org.pk}/certificate/").status_code == 302


def test_only_one_organisation_holds_a_number_confirmed(operator):
    first, second = startup(UserFactory(), name="First"), startup(UserFactory(), name="Second")
    organisation_brn_confirm(organisation=with_certificate(first), actor=operator)
    with pytest.raises(PortalError) as exc:
        organisation_brn_confirm(organisation=with_certificate(second), actor=operator)
    assert exc.value.code == "brn_taken"
    with pytest.raises(IntegrityError), transaction.atomic():
        Organisation.objects.filter(pk=second.pk).update(brn_status="verified")
    with pytest.raises(PortalError):
        startup(UserFactory(), name="Third")


def test_an_operator_moves_a_disputed_number_with_a_reason_logged_on_both_sides(client, operator):
    squatter = startup(UserFactory(), name="Squatter")
    organisation_brn_confirm(organisation=with_certificate(squatter), actor=operator)  # confirmed by mistake
    real = Organisation.objects.create(kind="startup", name_ko="진짜", name_en="Real", founded_on="2023-01-01")
    client.force_login(operator)
    page = client.post(
        "/admin/portal/organisation/", {"action": "move_business_number", "_selected_action": [squatter.pk]}
    )
    assert page.status_code == 200 and "진짜" in page.content.decode()  # the target is offered
    response = client.post(
        "/admin/portal/organisation/",
        {"action": "move_business_number", "_selected_action": [squatter.pk], "apply": "1", "target": real.pk,
         "reason": "Registration certificate checked; ticket 42."},
    )  # fmt: skip
    assert response.status_code == 302
    squatter.refresh_from_db()
    real.refresh_from_db()
    assert (squatter.business_registration_number, squatter.brn_status) == (None, "")
    assert (real.business_registration_number, real.brn_status) == (REAL, "verified")
    for org, action in ((squatter, "brn_moved_away"), (real, "brn_moved_in")):
        row = OrganisationAuditLog.objects.get(organisation=org, action=action)
        assert (row.actor, row.reason) == (operator, "Registration certificate checked; ticket 42.")
    with pytest.raises(PortalError):
        organisation_brn_move(source=real, target=squatter, actor=operator, reason="  ")


def test_the_service_refuses_unissued_numbers_too(db):
    with pytest.raises(PortalError) as exc:
        startup(UserFactory(), number="0000000000")
    assert exc.value.code == "invalid_brn"


def test_a_number_is_not_confirmed_before_the_certificate_is_uploaded(client, operator):
    org = startup(UserFactory())
    with pytest.raises(PortalError) as exc:
        organisation_brn_confirm(organisation=org, actor=operator)
    assert exc.value.code == "no_document"
    client.force_login(operator)
    client.post("/admin/portal/organisation/", {"action": "confirm_business_numbers", "_selected_action": [org.pk]})
    org.refresh_from_db()
    assert org.brn_status == "claimed"
    assert not OrganisationAuditLog.objects.filter(organisation=org, action="brn_confirmed").exists()
