"""Newcomer findings on carried-forward amounts, bank transfers, the admin's invoice actions and
the invoice documents: each test reproduces what a newcomer (finance, a customer, an accountant)
saw and states what they should see instead."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from django.core import mail
from django.template import Context, Template
from django.utils import timezone, translation

from billing.models import CreditNote, Invoice
from billing.pdf import invoice_pdf_html
from billing.services.invoices import invoice_card_amount_refused, invoice_issue, invoice_reissue, invoice_void
from billing.services.transfers import bank_transfer_record, invoice_write_off
from portal.errors import PortalError
from portal.mail import mailing_send
from portal.models import Mailing
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.billing.test_bank_transfers import huge_invoice, small_final_month
from tests.portal.test_review_admin import staff_user

NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
I = Invoice.Status  # noqa: E741
FINANCE = (
    "billing.view_invoice", "billing.change_invoice", "billing.void_invoice", "billing.reissue_invoice",
    "billing.record_transfer", "billing.issue_credit_note",
)  # fmt: skip


@pytest.fixture
def finance(db):
    return staff_user("finance@centre.kr", *FINANCE)


def test_a_bank_transfer_dated_after_today_is_refused_and_the_invoice_stays_open(db, client, finance):
    invoice = huge_invoice()
    tomorrow = timezone.localdate() + timedelta(days=1)
    with pytest.raises(PortalError) as refused:
        bank_transfer_record(
            invoice_id=invoice.pk, actor=finance, amount_krw=invoice.amount_due_krw, received_on=tomorrow, reference="K"
        )
    assert refused.value.code == "future"
    client.force_login(finance)
    page = client.post(
        f"/admin/billing/invoice/{invoice.pk}/transfer/",
        {"amount_krw": str(invoice.amount_due_krw), "received_on": f"{tomorrow:%Y-%m-%d}", "reference": "K"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert page.status_code == 200 and "cannot be received after today" in page.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == I.OPEN


def test_a_carried_amount_has_no_due_date_on_the_page_and_in_the_admin_even_once_paid(db, client, finance):
    invoice = small_final_month()
    assert invoice.due_on is None
    bank_transfer_record(invoice_id=invoice.pk, actor=finance, amount_krw=55, received_on=NOV, reference="IBK-1")
    invoice.refresh_from_db()
    assert invoice.status == I.PAID and invoice.due_on is None
    owner = invoice.organisation.memberships.get(role="owner").user
    client.force_login(owner)
    page = client.get(f"/billing/invoices/?organisation={invoice.organisation_id}", HTTP_ACCEPT_LANGUAGE="en")
    row = page.content.decode().split(invoice.number, 1)[1].split("</tr>", 1)[0]
    assert "<td>–</td>" in row
    client.force_login(finance)
    listing = client.get("/admin/billing/invoice/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<td class="field-due">–</td>' in listing
    change = client.get(f"/admin/billing/invoice/{invoice.pk}/change/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<div class="readonly">–</div>' in change.split("field-due", 1)[1].split("</div>\n", 2)[0] + "</div>"


def test_the_write_off_credit_note_prints_its_generated_reason_in_korean_and_english(db, finance):
    invoice = small_final_month()
    invoice_write_off(invoice_id=invoice.pk, actor=finance, reason="organisation closed")
    assert CreditNote.objects.get().reason == "대손 처리 / Written off: organisation closed"


@pytest.mark.parametrize(
    ("action", "state"),
    [("void", "paid"), ("transfer", "paid"), ("write-off", "open"), ("credit", "open"), ("reissue", "open")],
)
def test_an_action_page_opened_for_an_invoice_it_cannot_change_says_why_instead_of_the_form(
    db, client, finance, action, state
):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    if state == "paid":
        bank_transfer_record(invoice_id=invoice.pk, actor=finance, amount_krw=6600, received_on=NOV, reference="T")
    client.force_login(finance)
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/{action}/", HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'class="errornote"' in html and '<form method="post">' not in html


def test_an_action_page_for_an_invoice_it_can_change_shows_the_form(db, client, finance):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    client.force_login(finance)
    html = client.get(f"/admin/billing/invoice/{invoice.pk}/void/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<form method="post">' in html and 'class="errornote"' not in html


def test_the_pdf_prints_the_bank_transfer_amount_in_won_sign_in_both_languages(db, settings):
    settings.BILLING_BANK_ACCOUNT = "KB국민은행 123-45-678901"
    invoice = huge_invoice()
    assert invoice.transfer_only
    html = invoice_pdf_html(invoice)
    assert "₩132,000,000" in html
    assert "132,000,000원" not in html


def test_an_english_page_puts_the_minus_before_the_won_sign_as_the_pdf_does():
    template = Template("{% load humanize_krw %}{{ amount|krw }}")
    with translation.override("en"):
        assert template.render(Context({"amount": -330})) == "-₩330"
        assert template.render(Context({"amount": 6600})) == "₩6,600"
    with translation.override("ko"):
        assert template.render(Context({"amount": -330})) == "-330원"
        assert template.render(Context({"amount": 6600})) == "6,600원"


def test_a_five_minute_line_shows_a_quantity_that_multiplies_to_its_amount(db, client):
    # 5 minutes at ₩3,600 per GPU-hour, 100 %: ₩300. "0.08" hours times ₩3,600 is ₩288.
    rate_card("startup", 3600)
    org, _owner = startup()
    grant_for(org, copay=100, intervals=[(at(2, 9), at(2, 9, 5))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    line = invoice.lines.get()
    assert (line.gpu_minutes, line.amount_krw) == (5, 300)
    html = invoice_pdf_html(invoice)
    assert "0:05" in html and "0.08" not in html


def test_the_members_are_told_to_transfer_with_the_account_when_a_refusal_makes_an_invoice_transfer_only(db, settings):
    settings.BILLING_BANK_ACCOUNT = "KB국민은행 123-45-678901"
    rate_card("startup", 3000)
    org, _owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    invoice_card_amount_refused(invoice_id=invoice.pk, code="amount_too_large", error="too large")
    mailing = Mailing.objects.get(template="invoice_transfer_only")
    mail.outbox.clear()
    mailing_send(mailing_id=mailing.pk)
    (message,) = mail.outbox
    assert "KB국민은행 123-45-678901" in message.body and invoice.number in message.body


def test_a_transfer_only_mail_sent_after_the_invoice_was_paid_is_skipped_with_the_reason(db, finance):
    rate_card("startup", 3000)
    org, _owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    invoice_card_amount_refused(invoice_id=invoice.pk, code="amount_too_large", error="too large")
    bank_transfer_record(invoice_id=invoice.pk, actor=finance, amount_krw=6600, received_on=NOV, reference="T")
    mailing = Mailing.objects.get(template="invoice_transfer_only")
    assert mailing_send(mailing_id=mailing.pk) == Mailing.Status.SKIPPED
    mailing.refresh_from_db()
    assert "is paid now" in mailing.reason


def test_the_csv_names_the_replaced_invoice_and_a_void_invoice_owes_nothing_in_the_csv_and_the_admin(
    db, client, finance
):
    rate_card("startup", 3000)
    org, _owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5)), (at(2, 9, month=12), at(2, 19, month=12))])
    invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=date(2027, 1, 1))
    invoice_void(invoice_id=dec.pk, actor=finance, reason="wrong buyer name")
    again = invoice_reissue(invoice_id=dec.pk, actor=finance, reason="fixed", today=date(2027, 1, 2))
    client.force_login(finance)
    listing = client.get("/admin/billing/invoice/?status=void", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "– (void)" in listing and "6,655" not in listing
    export = client.post("/admin/billing/invoice/", {"action": "export_csv", "_selected_action": [dec.pk, again.pk]})
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(export.content.decode().lstrip("\ufeff")))}
    assert (rows[dec.number]["amount_due_krw"], rows[dec.number]["status"]) == ("0", "void")
    assert (rows[again.number]["replaces"], rows[again.number]["amount_due_krw"]) == (dec.number, "6655")
    assert rows[again.number]["carried_krw"] == "55" and rows[again.number]["transfer_only"] == "no"
