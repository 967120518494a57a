"""The applicant's PDF: reviewers and approvers open it from the admin, staff with a conflict of
interest never do, and its storage path is shown to nobody."""

import re

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.models import Application, Membership
from portal.services import applications as svc
from tests.factories import ApplicationFactory
from tests.portal.test_application_views import PDF, form_data
from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

QUEUE = "/admin/portal/application/"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def submitted(db):
    app = ApplicationFactory()
    svc.application_update(
        application=app,
        user=app.principal_investigator,
        data={},
        team=[],
        attachment=SimpleUploadedFile("Research plan 2027.pdf", PDF, content_type="application/pdf"),
        expected_version=app.version,
    )
    return svc.application_submit(application=Application.objects.get(pk=app.pk), actor=app.principal_investigator)


def download_link(client, app) -> str:
    page = client.get(f"{QUEUE}{app.pk}/change/").content.decode()
    assert app.attachment.name not in page  # the storage path is never shown
    links = re.findall(r'href="([^"]*/attachment/)"', page)
    assert links, "the application page links the PDF"
    return links[0]


@pytest.mark.parametrize("perms", [REVIEWER_PERMS, (*REVIEWER_PERMS, "portal.decide_application")])
def test_reviewers_and_approvers_download_the_pdf_from_the_application_page(client, submitted, perms):
    client.force_login(staff_user("staff@ministry.go.kr", *perms))
    response = client.get(download_link(client, submitted))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PDF
    assert response["Content-Disposition"].startswith("attachment")
    assert "Research plan 2027.pdf" in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "application/pdf"


def test_staff_who_may_only_view_cannot_download_the_pdf(client, submitted):
    client.force_login(staff_user("viewer@ministry.go.kr", "portal.view_application"))
    assert client.get(f"{QUEUE}{submitted.pk}/attachment/").status_code == 403


def test_a_reviewer_from_the_applicant_organisation_cannot_download_the_pdf(client, submitted):
    reviewer = staff_user("reviewer@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")
    Membership.objects.create(user=reviewer, organisation=submitted.organisation)
    client.force_login(reviewer)
    assert client.get(f"{QUEUE}{submitted.pk}/attachment/").status_code in (403, 404)


def test_the_applicant_sees_the_original_file_name_not_the_storage_path(client, db):
    from tests.factories import MembershipFactory, OrganisationDomainFactory, UserFactory

    domain = OrganisationDomainFactory(domain="snu-demo.ac.kr")
    member = MembershipFactory(user=UserFactory(email="kim@snu-demo.ac.kr"), organisation=domain.organisation)
    app = ApplicationFactory(organisation=member.organisation, principal_investigator=member.user)
    client.force_login(member.user)
    data = form_data(app.call, member, save="1", version=app.version)
    data["attachment"] = SimpleUploadedFile("연구계획서.pdf", PDF, content_type="application/pdf")
    client.post(f"/applications/{app.pk}/edit/", data)
    app.refresh_from_db()
    assert app.attachment_name == "연구계획서.pdf"
    assert "연구계획서" not in app.attachment.name  # stored under a random name
    page = client.get(f"/applications/{app.pk}/edit/").content.decode()
    assert "연구계획서.pdf" in page
    assert app.attachment.name not in page and "applications/20" not in page


def test_replacing_the_pdf_deletes_the_old_file_from_storage(db, django_capture_on_commit_callbacks):
    app = ApplicationFactory()
    with django_capture_on_commit_callbacks(execute=True):
        app = svc.application_update(
            application=app, user=app.principal_investigator, data={}, team=[],
            attachment=SimpleUploadedFile("v1.pdf", PDF), expected_version=app.version,
        )  # fmt: skip
    old = app.attachment.name
    assert default_storage.exists(old)
    with django_capture_on_commit_callbacks(execute=True):
        app = svc.application_update(
            application=app, user=app.principal_investigator, data={}, team=[],
            attachment=SimpleUploadedFile("v2.pdf", PDF + b"%v2"), expected_version=app.version,
        )  # fmt: skip
    assert not default_storage.exists(old)
    assert default_storage.exists(app.attachment.name)
    assert app.attachment_name == "v2.pdf"
