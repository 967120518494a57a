"""The invoices page and the PDF: for owners and billing members of the organisation as they are
now; the PDF carries the number, lines, both business numbers and VAT in Korean and English."""

from __future__ import annotations

import re
import subprocess
from datetime import date

import pytest

from billing.services.invoices import invoice_issue
from portal.models import Membership
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture
def invoice(db):
    rate_card("startup", 3000)
    org, _owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    issued, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    return issued


def billing_member(invoice):
    return invoice.organisation.memberships.get(role=Membership.Role.BILLING).user


def test_a_billing_member_sees_the_invoice_and_this_month_so_far(client, invoice):
    client.force_login(billing_member(invoice))
    page = client.get("/billing/invoices/")
    assert page.status_code == 200
    text = page.content.decode()
    assert invoice.number in text and f"/billing/invoices/{invoice.pk}/pdf/" in text
    assert page.context["so_far"] is not None and "lines" in page.context["so_far"]


@pytest.mark.parametrize("who", ["plain member", "stranger", "removed billing member"])
def test_others_get_404_for_the_list_and_the_pdf(client, invoice, who):
    if who == "plain member":
        user = MembershipFactory(organisation=invoice.organisation).user
    elif who == "stranger":
        user = UserFactory()
    else:
        user = billing_member(invoice)
        Membership.objects.filter(user=user).delete()
    client.force_login(user)
    assert client.get("/billing/invoices/").status_code == 404
    assert client.get(f"/billing/invoices/{invoice.pk}/pdf/").status_code == 404


def test_another_organisations_owner_gets_404_for_the_pdf(client, invoice):
    _other, other_owner = startup()
    client.force_login(other_owner)
    assert client.get(f"/billing/invoices/{invoice.pk}/pdf/").status_code == 404
    assert client.get(f"/billing/invoices/?organisation={invoice.organisation_id}").status_code == 404


def test_the_pdf_carries_number_lines_business_numbers_and_vat_in_korean_and_english(client, invoice, tmp_path):
    """A foreign founder and a Korean accountant read the same stored document: each label in
    both languages, the parties' Korean and English names, amounts in won, ISO dates."""
    client.force_login(billing_member(invoice))
    response = client.get(f"/billing/invoices/{invoice.pk}/pdf/")
    assert response["Content-Type"] == "application/pdf"
    pdf = tmp_path / "invoice.pdf"
    pdf.write_bytes(b"".join(response.streaming_content) if response.streaming else response.content)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    brn = invoice.buyer_brn
    for expected in (
        "INV-2026-000001",
        "청구서 / Invoice",
        "공급가액",
        "Supply value",
        "부가가치세 (10 %)",
        "VAT (10 %)",
        "합계",
        "Total",
        "공급받는 자",
        "Buyer",
        "지원 시간(자부담)",
        "Subsidised hours",
        "₩6,000",
        "₩600",
        "₩6,600",
        "2026-12-01",
        "2026-11-02 09:00",
        invoice.organisation.name_ko,
        invoice.organisation.name_en,
        "National AI Computing Centre",
        f"{brn[:3]}-{brn[3:5]}-{brn[5:]}",
        "120-81-47521",
    ):
        assert expected in text, (expected, text)
    assert re.search(r"[0-9]원", text) is None  # no 6,000원 beside ₩6,000: one way to write won


def test_the_pay_button_opens_checkout_for_the_invoice_amount(client, invoice, recorder):
    client.force_login(billing_member(invoice))
    response = client.post(f"/billing/invoices/{invoice.pk}/pay/")
    assert response.status_code == 302 and response["Location"].startswith("https://pay.test/cs_test_")
    form = recorder.find("/v1/checkout/sessions")[0]["form"]
    assert (form["mode"], form["line_items[0][price_data][unit_amount]"], form["metadata[invoice_id]"]) == (
        "payment",
        str(invoice.total_krw),
        str(invoice.pk),
    )


def test_a_plain_member_cannot_start_a_payment(client, invoice, recorder):
    client.force_login(MembershipFactory(organisation=invoice.organisation).user)
    assert client.post(f"/billing/invoices/{invoice.pk}/pay/").status_code == 404
    assert client.post("/billing/card/", {"organisation": invoice.organisation_id}).status_code == 404
    assert recorder.requests == []


def test_the_invoice_list_is_paginated_and_its_queries_do_not_grow_with_invoices(
    client, invoice, django_assert_max_num_queries
):
    from billing.models import Invoice

    base = {f.name: getattr(invoice, f.name) for f in Invoice._meta.fields if f.name not in {"id", "number", "month"}}
    for n in range(2, 41):
        Invoice.objects.create(**base, number=f"INV-2025-{n:06d}", month=date(2023 + n // 12, n % 12 + 1, 1))
    client.force_login(billing_member(invoice))
    with django_assert_max_num_queries(25):
        page = client.get("/billing/invoices/")
    assert len(page.context["page"].object_list) == 24
    assert client.get("/billing/invoices/?page=2").context["page"].object_list[0].number.startswith("INV-")


def test_the_pdf_is_the_document_stored_at_finalisation_byte_for_byte(client, invoice, monkeypatch):
    import hashlib

    from billing.models import InvoiceDocument, Rate
    from portal.models import Organisation

    stored = InvoiceDocument.objects.get(invoice=invoice)
    assert hashlib.sha256(bytes(stored.content)).hexdigest() == stored.sha256
    client.force_login(billing_member(invoice))
    first = client.get(f"/billing/invoices/{invoice.pk}/pdf/").content
    # Later the organisation is renamed, its number changes, the rate changes and the template
    # would render differently: the invoice's document does not change.
    Organisation.objects.filter(pk=invoice.organisation_id).update(name_ko="새 이름 주식회사", name_en="Renamed Ltd")
    Rate.objects.update(krw_per_gpu_hour=9999)

    def no_rendering(*args, **kwargs):
        raise AssertionError("a finalised invoice was rendered again")

    monkeypatch.setattr("billing.pdf.invoice_pdf", no_rendering)
    again = client.get(f"/billing/invoices/{invoice.pk}/pdf/")
    assert again.content == first == bytes(stored.content)
    assert again["ETag"] == f'"{stored.sha256}"'
