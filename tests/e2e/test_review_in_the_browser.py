"""An approver signs in with password and authenticator code, reviews and approves an
application in the admin, in a real browser with the CSP enforced."""

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.contrib.auth.models import Permission

from allocations.models import Grant
from portal.services import applications as svc
from tests.e2e.conftest import sign_in
from tests.factories import ApplicationFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_approver_reviews_and_approves(page):
    app = ApplicationFactory(title="Protein language model")
    svc.application_submit(application=app, actor=app.principal_investigator)
    approver = UserFactory(email="approver@ministry.go.kr", is_staff=True)
    approver.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "view_application",
                "view_review",
                "add_review",
                "view_eligibilityresult",
                "decide_application",
            ]
        )
    )
    secret = generate_totp_secret()
    TOTP.activate(approver, secret)

    sign_in(page, approver.email, settings.DEMO_PASSWORD, secret)

    page.goto("/admin/portal/application/")
    page.click("text=Protein language model")
    page.click("text=Start the review")
    page.click("text=Write or edit your review")
    for field in ("merit", "feasibility", "national_priority", "resource_justification"):
        page.check(f"input[name={field}][value='4']")
    page.select_option("select[name=recommendation]", "approve")
    page.fill("textarea[name=comment]", "Sound plan.")
    page.click("input[type=submit]")
    page.click("text=Decide")
    page.check("input[name=action][value=approve]")
    page.fill("input[name=gpu_hours]", "5000")
    page.fill("textarea[name=reason]", "Approved with 5,000 GPU-hours.")
    page.click("input[type=submit]")
    page.wait_for_url(f"**/admin/portal/application/{app.pk}/change/")

    app.refresh_from_db()
    assert app.status == "approved"
    assert Grant.objects.get(application=app).gpu_hours == 5000
    assert page.csp_violations == []
