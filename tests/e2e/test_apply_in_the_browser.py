"""A researcher signs in, applies to a call, submits and sees the result, in a real browser,
with the CSP enforced and no violation reported."""

import pytest
from django.conf import settings

from portal.models import Application
from tests.factories import CallFactory, MembershipFactory, OrganisationDomainFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def researcher():
    domain = OrganisationDomainFactory(domain="snu-demo.ac.kr", organisation__name_en="SNU Demo")
    return MembershipFactory(user=UserFactory(email="kim@snu-demo.ac.kr"), organisation=domain.organisation).user


def sign_in(page, email):
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", settings.DEMO_PASSWORD)
    page.click("main form[action='/accounts/login/'] button[type=submit]")
    page.wait_for_url("**/dashboard/")


def test_a_researcher_applies_and_submits(page, researcher, tmp_path):
    call = CallFactory(title_en="Academic AI 2027", title_ko="학술 AI 2027")
    sign_in(page, researcher.email)

    page.goto("/calls/")
    page.click(f"a[href='/calls/{call.pk}/apply/']")
    page.select_option("select[name=organisation]", label="SNU Demo")
    page.fill("input[name=title]", "Korean speech model")
    page.click("button[name=save]")
    page.wait_for_url("**/applications/*/")
    assert "Still to fill in before submitting" in page.content()

    page.click("text=Edit")
    page.fill("textarea[name=abstract]", "Speech recognition for Korean dialects.")
    page.select_option("select[name=field]", "nlp")
    page.select_option("select[name=gpu_model]", "H100-80GB")
    page.fill("input[name=gpu_count]", "4")
    page.fill("input[name=gpu_hours]", "30000")  # over the cap: the rule says so
    page.fill("input[name=starts_on]", call.allocation_starts_on.isoformat())
    page.fill("input[name=ends_on]", call.allocation_ends_on.isoformat())
    page.fill("textarea[name=justification]", "Four GPUs for a year.")
    page.select_option("select[name=data_sensitivity]", "personal")
    page.click("button[name=submit]")
    page.wait_for_url("**/applications/*/")
    assert "over the cap of 20,000" in page.content()
    assert Application.objects.get().status == "draft"

    page.click("text=Edit")
    page.fill("input[name=gpu_hours]", "8000")
    page.click("button[name=submit]")
    page.wait_for_url("**/applications/*/")
    assert "was submitted" in page.content()
    assert Application.objects.get().status == "submitted"
    page.screenshot(path=str(tmp_path / "submitted.png"), full_page=True)

    with page.expect_navigation():  # the language applies on selection, no button to press
        page.select_option("#language-select", "ko")
    assert "제출됨" in page.content()
    assert page.csp_violations == []
