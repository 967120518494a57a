"""A startup founder, in a real browser with the CSP enforced: registers the company (a wrong
business registration number is refused first, with what was typed kept), sees the co-payment while applying,
buys an hour pack (Checkout answered by a recording server, the payment confirmed by a signed
webhook), and downloads an invoice PDF whose text carries the number, lines and VAT in Korean."""

import subprocess
from datetime import date

import pytest
import requests

from billing.models import HourPack
from billing.services.invoices import invoice_issue
from portal.models import Organisation
from tests.billing.conftest import event, recorder, signed, stripe_settings  # noqa: F401 - fixtures
from tests.billing.helpers import at, grant_for, rate_card
from tests.e2e.conftest import sign_in
from tests.factories import CallFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_founder_sees_the_co_payment_buys_hours_and_downloads_an_invoice(page, live_server, jobs, tmp_path, request):
    rec = request.getfixturevalue("recorder")
    rate_card("startup", 3000)
    founder = UserFactory(email="founder@e2e-startup.kr")
    call = CallFactory(title_en="Startup AI 2027", copay_percent=20, eligible_kinds=["startup"])
    sign_in(page, founder.email)

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
    assert not Organisation.objects.filter(name_en="E2E Startup").exists()
    page.fill("input[name=business_registration_number]", "120-81-47521")
    page.click("main form[method=post] button[type=submit]")
    page.wait_for_url("**/organisations/*/")
    org = Organisation.objects.get(name_en="E2E Startup")
    assert org.memberships.get(user=founder).role == "owner"

    # While applying: 8,000 H100-hours at 3,000 = 24,000,000; 20 % = 4,800,000; VAT 480,000.
    page.goto(f"/calls/{call.pk}/apply/")
    page.select_option("select[name=gpu_model]", "H100-80GB")
    page.fill("input[name=gpu_hours]", "8000")
    preview = page.locator("#cost-preview")
    assert preview.locator("[data-out=copay]").inner_text() == "₩4,800,000"
    assert preview.locator("[data-out=vat]").inner_text() == "₩480,000"
    assert preview.locator("[data-out=value]").inner_text() == "₩24,000,000"

    # Buying 10 hours: 30,000 + VAT 3,000; Checkout "returns" to the packs page.
    rec.checkout_url = f"{live_server.url}/billing/hour-packs/?organisation={org.pk}"
    page.goto("/billing/hour-packs/")
    page.select_option("select[name=gpu_model]", "H100-80GB")
    page.fill("input[name=gpu_hours]", "10")
    page.click("main form[method=post] button[type=submit]")
    page.wait_for_url("**/billing/hour-packs/?organisation=*")
    pack = HourPack.objects.get()
    assert (pack.total_krw, pack.status) == (33000, "pending")
    obj = {
        "id": pack.checkout_session_id,
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 33000,
        "currency": "krw",
        "metadata": {"kind": "hour_pack", "hour_pack_id": str(pack.pk)},
    }
    body, sig = signed(event("evt_e2e_pack", "checkout.session.completed", obj))
    answer = requests.post(
        f"{live_server.url}/billing/stripe/webhook/",
        data=body,
        headers={"Stripe-Signature": sig, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 200
    jobs.run()
    page.reload()
    assert "Paid" in page.locator("main table").inner_text()

    # The invoice of November: 10 h of subsidised use at 20 % = 6,000 + VAT 600.
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    page.goto("/billing/invoices/")
    assert invoice.number in page.content()
    pdf = page.request.get(f"/billing/invoices/{invoice.pk}/pdf/")
    assert pdf.headers["content-type"] == "application/pdf"
    path = tmp_path / "invoice.pdf"
    path.write_bytes(pdf.body())
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    for expected in (invoice.number, "지원 시간", "10.00", "6,000원", "부가가치세", "600원", "6,600원"):
        assert expected in text, (expected, text)
    assert page.csp_violations == []
