"""A researcher signs in, applies to a call, submits and sees the result, in a real browser,
with the CSP enforced and no violation reported."""

import pytest
from django.conf import settings

from portal.models import Application
from tests.e2e.conftest import sign_in
from tests.e2e.steps import application_fill_and_submit, application_start
from tests.factories import CallFactory, MembershipFactory, OrganisationDomainFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def researcher():
    domain = OrganisationDomainFactory(domain="snu-demo.ac.kr", organisation__name_en="SNU Demo")
    return MembershipFactory(user=UserFactory(email="kim@snu-demo.ac.kr"), organisation=domain.organisation).user


def test_a_researcher_applies_and_submits(page, researcher, tmp_path):
    call = CallFactory(title_en="Academic AI 2027", title_ko="학술 AI 2027")
    sign_in(page, researcher.email, settings.DEMO_PASSWORD)

    application_start(page, call, organisation="SNU Demo", title="Korean speech model")
    assert "Still to fill in before submitting" in page.content()

    application_fill_and_submit(page, call, gpu_hours=30000)  # over the cap: the rule says so
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
