"""Browser tests: Playwright drives Debian's chromium (never a downloaded browser) against
Django's live server on a free loopback port."""

import os
import shutil
import time

import pytest

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
        page.fill("input[name=code]", format_hotp_value(hotp_value(totp_secret, int(time.time()) // 30)))
        page.click("main form button[type=submit]")
    page.wait_for_load_state()
