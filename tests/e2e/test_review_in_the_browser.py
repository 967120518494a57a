"""An approver signs in with password and authenticator code, reviews and approves an
application in the admin with fewer GPU-hours than asked, for the dates asked, in a real
browser with the CSP enforced."""

import pytest
from django.conf import settings

from allocations.models import Grant
from portal.services import applications as svc
from tests.e2e.conftest import sign_in
from tests.e2e.steps import APPROVER_PERMS, admin_approve, admin_review, staff_with_totp
from tests.factories import ApplicationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_approver_reviews_and_approves(page):
    app = ApplicationFactory(title="Protein language model")
    svc.application_submit(application=app, actor=app.principal_investigator)
    approver, secret = staff_with_totp("approver@ministry.go.kr", *APPROVER_PERMS)

    sign_in(page, approver.email, settings.DEMO_PASSWORD, secret)

    page.goto("/admin/portal/application/")
    page.click("text=Protein language model")
    admin_review(page, app.pk)
    admin_approve(page, app.pk, days=None, gpu_hours=5000, reason="Approved with 5,000 GPU-hours.")

    app.refresh_from_db()
    assert app.status == "approved"
    assert Grant.objects.get(application=app).gpu_hours == 5000
    assert page.csp_violations == []
