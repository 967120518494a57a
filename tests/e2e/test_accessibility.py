"""No serious or critical axe-core violation on the main pages, signed out and signed in, in
English and Korean. axe-core comes from PyPI (axe-playwright-python ships axe.min.js); it is
evaluated through the DevTools protocol, which the page's CSP does not restrict, so the pages
run under their real policy."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.conf import settings

from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BLOCKING = {"serious", "critical"}


def violations(page, axe: Axe) -> list[str]:
    results = axe.run(page).response
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:3])
        for v in results["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_main_pages_have_no_serious_or_critical_axe_violations(browser, live_server, main_pages, language):
    user, public, signed_in = main_pages
    context = browser.new_context(base_url=live_server.url)
    context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    page = context.new_page()
    axe = Axe()
    found = {}
    try:
        for path in public:
            page.goto(path)
            found[path] = violations(page, axe)
        sign_in(page, user.email, settings.DEMO_PASSWORD)
        for path in signed_in:
            page.goto(path)
            found[path] = violations(page, axe)
            if path == "/dashboard/":  # the per-day numbers behind their disclosure, too
                page.click("details.chart-data summary")
                found["/dashboard/ (numbers open)"] = violations(page, axe)
    finally:
        context.close()
    assert {path: v for path, v in found.items() if v} == {}


def test_the_review_and_fleet_pages_have_no_serious_or_critical_axe_violations(page, main_pages):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    from portal.services import applications as svc
    from tests.factories import ApplicationFactory
    from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

    user, _public, _signed_in = main_pages
    app = ApplicationFactory(organisation=user.memberships.get().organisation)
    app = svc.application_submit(application=app, actor=app.principal_investigator)
    staff = staff_user("operator-reviewer@centre.kr", *REVIEWER_PERMS, "allocations.view_node")
    staff.authenticator_set.all().delete()
    secret = generate_totp_secret()
    TOTP.activate(staff, secret)
    sign_in(page, staff.email, settings.DEMO_PASSWORD, secret)
    axe = Axe()
    found = {}
    for path in (f"/admin/portal/application/{app.pk}/review/", "/admin/fleet/"):
        assert page.goto(path).status == 200, path
        found[path] = violations(page, axe)
    assert {path: v for path, v in found.items() if v} == {}
