"""Journey 2, one continuous story in a real browser with the CSP enforced: a startup founder
registers the company (a wrong business registration number is refused first, with what was
typed kept), sees the co-payment in won while applying and submits; an approver signs in with
TOTP and approves in the admin; the founder buys an hour pack (Checkout answered by a recording
server, the payment confirmed by a signed webhook), and after the month's invoicing
(run_invoicing) downloads the invoice PDF whose text carries the number, lines and VAT in
Korean and English."""

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from allocations.models import AccessInterval, Grant
from billing.models import HourPack, Invoice
from portal.models import Application, Organisation
from tests.billing.conftest import recorder, stripe_settings  # noqa: F401 - fixtures
from tests.billing.helpers import at, rate_card
from tests.e2e.conftest import sign_in
from tests.e2e.steps import (
    APPROVER_PERMS,
    admin_approve,
    admin_review,
    application_fill_and_submit,
    application_save,
    application_start,
    checkout_completed,
    invoice_pdf_text,
    previous_month,
    staff_with_totp,
)
from tests.factories import CallFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_founder_registers_applies_is_approved_buys_hours_and_downloads_an_invoice(
    page, live_server, jobs, tmp_path, request
):
    rec = request.getfixturevalue("recorder")
    rate_card("startup", 3000)
    founder = UserFactory(email="founder@e2e-startup.kr")
    call = CallFactory(title_en="Startup AI 2027", copay_percent=20, eligible_kinds=["startup"])
    approver, approver_secret = staff_with_totp("approver@ministry.go.kr", *APPROVER_PERMS)
    sign_in(page, founder.email, settings.DEMO_PASSWORD)

    # Registering the company: a number with a wrong check digit is refused, the form kept.
    page.goto("/organisations/new/")
    page.select_option("select[name=kind]", "startup")
    page.fill("input[name=name_ko]", "이투이 스타트업")
    page.fill("input[name=name_en]", "E2E Startup")
    page.fill("input[name=business_registration_number]", "120-81-47522")
    page.fill("input[name=founded_on]", "2024-03-01")
    page.click("main form[method=post] button[type=submit]")
    assert "its check digit does not match" in page.inner_text("main")
    assert page.input_value("input[name=name_en]") == "E2E Startup"
    assert page.input_value("input[name=business_registration_number]") == "120-81-47522"
    assert not Organisation.objects.filter(name_en="E2E Startup").exists()
    page.fill("input[name=business_registration_number]", "120-81-47521")
    page.click("main form[method=post] button[type=submit]")
    page.wait_for_url("**/organisations/*/")
    org = Organisation.objects.get(name_en="E2E Startup")
    assert org.memberships.get(user=founder).role == "owner"

    # While applying: 8,000 H100-hours at 3,000 = 24,000,000; 20 % = 4,800,000; VAT 480,000.
    application_start(page, call, organisation="E2E Startup", title="Retail demand model", save=False)
    page.select_option("select[name=gpu_model]", "H100-80GB")
    page.fill("input[name=gpu_hours]", "8000")
    preview = page.locator("#cost-preview")
    # Written by static/js/cost-preview.js (a deferred script, which may run after the typing on
    # a busy machine): waited for, as the applicant would see it appear.
    expect(preview.locator("[data-out=copay]")).to_have_text("₩4,800,000", timeout=15_000)
    expect(preview.locator("[data-out=vat]")).to_have_text("₩480,000", timeout=15_000)
    expect(preview.locator("[data-out=value]")).to_have_text("₩24,000,000", timeout=15_000)
    application_save(page)
    application_fill_and_submit(page, call, gpu_hours=8000, gpu_count=1)
    assert "was submitted" in page.content()
    app = Application.objects.get(organisation=org)
    assert app.status == "submitted"

    # An approver (TOTP) reviews and approves it in the admin.
    page.context.clear_cookies()
    sign_in(page, approver.email, settings.DEMO_PASSWORD, approver_secret)
    admin_review(page, app.pk)
    admin_approve(page, app.pk)
    app.refresh_from_db()
    assert app.status == "approved"
    grant = Grant.objects.get(application=app)
    assert grant.copay_percent == 20

    # Buying 10 hours: 30,000 + VAT 3,000; Checkout "returns" to the packs page.
    page.context.clear_cookies()
    sign_in(page, founder.email, settings.DEMO_PASSWORD)
    rec.checkout_url = f"{live_server.url}/billing/hour-packs/?organisation={org.pk}"
    page.goto("/billing/hour-packs/")
    page.select_option("select[name=gpu_model]", "H100-80GB")
    page.fill("input[name=gpu_hours]", "10")
    page.click("main form[method=post] button[type=submit]")
    page.wait_for_url("**/billing/hour-packs/?organisation=*")
    pack = HourPack.objects.get()
    assert (pack.total_krw, pack.status) == (33000, "pending")
    checkout_completed(live_server, pack, "evt_e2e_pack")
    jobs.run()
    page.reload()
    assert "Paid" in page.locator("main table").inner_text()

    # Time passes: the grant was approved last month and used its GPU 10 hours on the 2nd (what
    # the node's access records would say); the month's invoicing runs.
    month = previous_month(timezone.localdate())
    Grant.objects.filter(pk=grant.pk).update(starts_on=month)
    opened, closed = at(2, 9, month=month.month, year=month.year), at(2, 19, month=month.month, year=month.year)
    AccessInterval.objects.create(grant=grant, gpu_count=1, opened_at=opened, closed_at=closed)
    call_command("run_invoicing", month=f"{month:%Y-%m}", stdout=StringIO())

    # The invoice: 10 h of subsidised use at 20 % = 6,000 + VAT 600.
    invoice = Invoice.objects.get(organisation=org, month=month)
    page.goto("/billing/invoices/")
    assert invoice.number in page.content()
    text = invoice_pdf_text(page, invoice, tmp_path)
    for expected in (
        invoice.number,
        "지원 시간",
        "Subsidised hours",
        "10:00",  # GPU time as h:mm, so that time times rate is the amount
        "₩6,000",
        "부가가치세",
        "VAT",
        "₩600",
        "₩6,600",
    ):
        assert expected in text, (expected, text)
    assert page.csp_violations == []
