"""Browser tests: Playwright drives Debian's chromium (never a downloaded browser) against
Django's live server on a free loopback port."""

import os
import shutil
import time

import pytest

from tests.totp import wait_out_a_closing_step

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test
    # body (fixtures, assertions) are still synchronous and safe.
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed (apt-get install chromium); make test installs it as root")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, locale="en-US")
    page = context.new_page()
    page.csp_violations = []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))
    yield page
    context.close()


_USED_STEPS: dict[str, int] = {}  # TOTP secret → the last 30-second step whose code was entered


def sign_in(page, email: str, password: str, totp_secret: str | None = None) -> None:
    """Sign in through the portal's login form (the admin's too), with the authenticator code of
    `totp_secret` when the account has one (staff)."""
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("main form[action^='/accounts/login/'] button[type=submit]")
    if totp_secret:
        page.wait_for_url("**/2fa/authenticate/**")
        # A code about to expire may reach the server too late, and one already used is refused
        # (allauth remembers it): a second sign-in within the same 30 s waits for the next code.
        step = wait_out_a_closing_step()
        while _USED_STEPS.get(totp_secret) == step:
            time.sleep(0.1)
            step = wait_out_a_closing_step()
        _USED_STEPS[totp_secret] = step
        page.fill("input[name=code]", format_hotp_value(hotp_value(totp_secret, step)))
        page.click("main form button[type=submit]")
        page.wait_for_url(lambda url: "/2fa/" not in url)
    page.wait_for_load_state()


@pytest.fixture
def main_pages(db):
    """A researcher who owns their organisation, with an application, an active grant that used
    its GPUs for an hour (usage rows built) and an open invoice; returns (user, page paths): the
    pages the layout and accessibility tests walk, public ones first."""
    from datetime import UTC, datetime, timedelta

    from django.test import Client

    from allocations.services.usage import usage_hour_build
    from portal.models import Membership
    from tests.allocations.metering_helpers import metered_grant, node_with_gpus, post, samples_every_minute
    from tests.billing.helpers import rate_card

    rate_card("academic", 2000)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    node, token, gpus = node_with_gpus("gpu-e2e-1")
    grant = metered_grant(gpus[:2], opened_at=hour, closed_at=hour + timedelta(hours=1))
    body = samples_every_minute(gpus[:2], hour.timestamp(), 60, utilization=40, power_w=250.0)
    assert post(Client(), node.hostname, token, body).status_code == 201
    usage_hour_build(hour=hour)
    user = grant.application.principal_investigator
    Membership.objects.filter(user=user, organisation=grant.organisation).update(role=Membership.Role.OWNER)
    app = grant.application
    public = ["/", "/calls/", "/rates/", "/accounts/login/", "/accounts/signup/"]
    signed_in = [
        "/dashboard/",
        f"/grants/{grant.pk}/",
        "/applications/",
        f"/applications/{app.pk}/",
        f"/calls/{app.call_id}/apply/",
        "/organisations/",
        f"/organisations/{grant.organisation_id}/",
        "/keys/",
        "/billing/invoices/",
        "/billing/hour-packs/",
    ]
    return user, public, signed_in
