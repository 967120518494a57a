"""A researcher submits, goes Back in the browser and submits the restored form again: still one
application and one e-mail."""

import pytest
from django.conf import settings

from portal.models import Application, OutboxMessage
from tests.e2e.conftest import sign_in
from tests.e2e.test_apply_in_the_browser import researcher  # noqa: F401 - the fixture
from tests.factories import CallFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def fill_complete_application(page, call) -> None:
    page.select_option("select[name=organisation]", label="SNU Demo")
    page.fill("input[name=title]", "Korean speech model")
    page.fill("textarea[name=abstract]", "Speech recognition for Korean dialects.")
    page.select_option("select[name=field]", "nlp")
    page.select_option("select[name=gpu_model]", "H100-80GB")
    page.fill("input[name=gpu_count]", "4")
    page.fill("input[name=gpu_hours]", "8000")
    page.fill("input[name=starts_on]", call.allocation_starts_on.isoformat())
    page.fill("input[name=ends_on]", call.allocation_ends_on.isoformat())
    page.fill("textarea[name=justification]", "Four GPUs for a year.")
    page.select_option("select[name=data_sensitivity]", "public")


def test_back_after_submit_and_submitting_again_makes_one_application_and_one_email(page, researcher):  # noqa: F811
    call = CallFactory()
    sign_in(page, researcher.email, settings.DEMO_PASSWORD)
    page.goto(f"/calls/{call.pk}/apply/")
    fill_complete_application(page, call)
    page.click("button[name=submit]")
    page.wait_for_url("**/applications/*/")
    assert "was submitted" in page.content()
    app = Application.objects.get()

    page.go_back()
    page.wait_for_load_state()
    if page.locator("button[name=submit]").count():  # the browser kept the filled form: submit it again
        page.click("button[name=submit]")
        page.wait_for_url("**/applications/*/")
    assert page.url.endswith(f"/applications/{app.pk}/")
    assert Application.objects.count() == 1
    mails = [
        m
        for m in OutboxMessage.objects.filter(func="portal.jobs.send_email_job")
        if m.args[0]["to"] == [researcher.email]
    ]
    assert len(mails) == 1
    assert page.csp_violations == []
