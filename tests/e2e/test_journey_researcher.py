"""Journey 1, one continuous story in a real browser against the live server, the RQ worker and
the sshd node stand-in: a university researcher signs up, confirms the e-mail and is thereby a
member of the university (its verified domain), adds an SSH key, applies to an open call and
sees the eligibility results; a reviewer signs in with TOTP and scores in the admin, an approver
signs in with TOTP and approves; the worker provisions the grant and the researcher sees it
become active, logs in over SSH with the key, reaches JupyterLab through the tunnel, and after a
day of replayed samples the dashboard chart shows the use."""

from __future__ import annotations

import pytest
from django.conf import settings

from allocations.models import Grant, SshKey
from portal.models import Application, Membership, Review
from tests.allocations.conftest import gpu_node, node_host, node_settings  # noqa: F401 - the sshd node fixtures
from tests.e2e.conftest import sign_in
from tests.e2e.steps import (
    APPROVER_PERMS,
    add_key_in_browser,
    admin_approve,
    admin_review,
    application_fill_and_submit,
    application_start,
    dashboard_shows_use,
    replay_a_day_of_samples,
    researcher_reaches_the_node,
    sign_up_and_confirm,
    staff_with_totp,
    wait_for_grant_page_status,
)
from tests.factories import CallFactory, OrganisationDomainFactory
from tests.portal.test_review_admin import REVIEWER_PERMS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-enough-Passw0rd"
EMAIL = "park@kaist-e2e.ac.kr"


def test_a_researcher_goes_from_sign_up_to_gpu_use_on_the_dashboard(page, jobs, gpu_node, tmp_path):  # noqa: F811
    OrganisationDomainFactory(domain="kaist-e2e.ac.kr", verified=True, organisation__name_en="KAIST E2E")
    call = CallFactory(title_en="Academic AI 2027", title_ko="학술 AI 2027")
    _reviewer, reviewer_secret = staff_with_totp("reviewer@ministry.go.kr", *REVIEWER_PERMS)
    _approver, approver_secret = staff_with_totp("approver@ministry.go.kr", *APPROVER_PERMS)

    # Sign up, confirm the e-mail: a member of the university by its domain.
    sign_up_and_confirm(page, jobs, EMAIL, PASSWORD)
    membership = Membership.objects.get(user__email=EMAIL)
    assert membership.organisation.name_en == "KAIST E2E"
    assert "KAIST E2E · Member" in page.inner_text("main")
    key, keys_page = add_key_in_browser(page, tmp_path, "park")
    assert SshKey.objects.get(user=membership.user).fingerprint in keys_page

    # Apply to the open call; the application page lists the eligibility results.
    application_start(page, call, organisation="KAIST E2E", title="Korean speech model")
    application_fill_and_submit(page, call, gpu_hours=500, gpu_count=2)
    assert "was submitted" in page.content()
    app = Application.objects.get(principal_investigator=membership.user)
    assert app.status == "submitted"
    rules = page.locator("table.eligibility tbody tr")
    assert rules.count() == app.eligibility_results.count() >= 1
    assert "Pass" in page.inner_text("table.eligibility")
    assert page.csp_violations == []

    # A reviewer (TOTP) scores it in the admin.
    page.context.clear_cookies()
    sign_in(page, "reviewer@ministry.go.kr", settings.DEMO_PASSWORD, reviewer_secret)
    admin_review(page, app.pk)
    review = Review.objects.get(application=app)
    assert (review.merit, review.recommendation) == (4, "approve")

    # An approver (TOTP) approves it in the admin; the review was started by the reviewer.
    page.context.clear_cookies()
    sign_in(page, "approver@ministry.go.kr", settings.DEMO_PASSWORD, approver_secret)
    admin_approve(page, app.pk)
    app.refresh_from_db()
    assert app.status == "approved"
    grant = Grant.objects.get(application=app)

    # The researcher watches the grant page while the worker provisions it on the node.
    page.context.clear_cookies()
    sign_in(page, EMAIL, PASSWORD)
    grant = wait_for_grant_page_status(page, jobs, grant, Grant.Status.ACTIVE)
    assert page.inner_text("p.status strong") == "Active"
    researcher_reaches_the_node(page, grant, gpu_node, key, tmp_path)

    # A day of use later, the dashboard's charts show it.
    replay_a_day_of_samples(grant, gpu_node, utilization=63)
    dashboard_shows_use(page, grant, "63.0%")
    assert page.csp_violations == []
