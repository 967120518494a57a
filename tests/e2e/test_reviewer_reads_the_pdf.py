"""A reviewer signs in with password and authenticator code, opens the review page, reads the
whole application there and downloads the applicant's PDF, in a real browser."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.services import applications as svc
from tests.e2e.conftest import sign_in
from tests.e2e.steps import staff_with_totp
from tests.factories import ApplicationFactory
from tests.portal.test_application_views import PDF
from tests.portal.test_review_admin import REVIEWER_PERMS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_opens_the_review_page_and_downloads_the_pdf(page, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    app = ApplicationFactory(title="Protein language model", abstract="Folding proteins with a language model.")
    app = svc.application_update(
        application=app, user=app.principal_investigator, data={}, team=[],
        attachment=SimpleUploadedFile("Research plan.pdf", PDF), expected_version=app.version,
    )  # fmt: skip
    svc.application_submit(application=app, actor=app.principal_investigator)
    reviewer, secret = staff_with_totp("reviewer@ministry.go.kr", *REVIEWER_PERMS)

    page.goto("/admin/")
    assert "/accounts/login/" in page.url  # the admin signs in through the portal's login
    sign_in(page, reviewer.email, settings.DEMO_PASSWORD, secret)

    page.goto(f"/admin/portal/application/{app.pk}/review/")
    assert "Folding proteins with a language model." in page.content()
    with page.expect_download() as info:
        page.click("a[href$='/attachment/']")
    download = info.value
    assert download.suggested_filename == "Research plan.pdf"
    saved = tmp_path / "downloaded.pdf"
    download.save_as(saved)
    assert saved.read_bytes() == PDF
    assert page.csp_violations == []
