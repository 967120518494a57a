"""Invoices not collectable by card (above Stripe's ₩99,999,999, or carried forward with no next
invoice) are paid by bank transfer: finance records the transfer in the admin (permission
`billing.record_transfer`, audited, idempotent) and it pays the invoice exactly like a card
payment; a final small amount may instead be written off with a credit note."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta

import pytest
from django.utils import timezone

from allocations.models import Grant
from billing import stripe_client
from billing.models import BankTransfer, BillingAccount, CreditNote, Invoice
from billing.services import payments
from billing.services.consequences import OVERDUE_REASON, invoices_enforce_overdue
from billing.services.invoices import invoice_issue
from billing.services.transfers import bank_transfer_record, invoice_write_off
from portal.errors import PortalError
from portal.models import Mailing, Membership, OutboxMessage
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.portal.test_review_admin import staff_user

NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
I = Invoice.Status  # noqa: E741


@pytest.fixture
def finance(db):
    return staff_user(
        "finance@centre.kr", "billing.view_invoice", "billing.record_transfer", "billing.issue_credit_note"
    )


def huge_invoice(localstripe: bool = False) -> Invoice:
    """120 GPU-hours at ₩1,000,000 with a 100 % co-payment: ₩120,000,000 + VAT."""
    rate_card("startup", 1_000_000)
    org, owner = startup()
    if localstripe:
        account = payments.billing_account_get_or_create(organisation=org, email=owner.email)
        pm = stripe_client.payment_method_attach(customer=account.stripe_customer_id, payment_method="pm_card_visa")
        BillingAccount.objects.filter(pk=account.pk).update(default_payment_method=pm)
    grant_for(org, copay=100, hours=1000, intervals=[(at(2, 0), at(7, 0))], node=True)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    return invoice


def test_a_120_million_won_invoice_is_payable_by_transfer_and_recorded_by_finance(
    db, localstripe, client, finance, settings, tmp_path
):
    settings.INVOICE_OVERDUE_SUSPEND_DAYS = 14
    settings.BILLING_BANK_ACCOUNT = "KB국민은행 123-45-678901 국가AI컴퓨팅센터"
    invoice = huge_invoice(localstripe=True)
    assert (invoice.supply_krw, invoice.total_krw) == (120_000_000, 132_000_000)
    assert invoice.status == I.OPEN and invoice.transfer_only
    # Never sent to Stripe: no charge job, no Checkout, no PaymentIntent.
    assert payments.invoice_charge(invoice_id=invoice.pk) == "by bank transfer"
    owner = invoice.organisation.memberships.get(role=Membership.Role.OWNER).user
    with pytest.raises(PortalError):
        payments.invoice_checkout_start(invoice=invoice, user=owner, success_url="https://x/", cancel_url="https://x/")
    client.force_login(owner)
    page = client.get("/billing/invoices/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "bank transfer" in page and "123-45-678901" in page
    assert f'action="/billing/invoices/{invoice.pk}/pay/"' not in page
    pdf = tmp_path / "invoice.pdf"
    pdf.write_bytes(client.get(f"/billing/invoices/{invoice.pk}/pdf/").content)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "이체해 주십시오" in text and "123-45-678901" in text, text

    # Unpaid long past its due date: the paying grant is suspended, as for any unpaid invoice.
    Invoice.objects.filter(pk=invoice.pk).update(due_on=timezone.localdate() - timedelta(days=20))
    [suspended] = invoices_enforce_overdue()
    assert Grant.objects.get(pk=suspended).status_reason == OVERDUE_REASON

    client.force_login(finance)
    change = client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{invoice.pk}/transfer/" in change
    before = OutboxMessage.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    response = client.post(
        f"/admin/billing/invoice/{invoice.pk}/transfer/",
        {"amount_krw": "132000000", "received_on": "2026-11-10", "reference": "KB 20261210-0042"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    invoice.refresh_from_db()
    assert invoice.status == I.PAID
    transfer = BankTransfer.objects.get()
    assert (transfer.invoice_id, transfer.amount_krw, transfer.received_on, transfer.recorded_by) == (
        invoice.pk, 132_000_000, date(2026, 11, 10), finance,
    )  # fmt: skip
    event = invoice.events.get(new_status=I.PAID)
    assert event.actor == finance and "KB 20261210-0042" in event.reason
    # Paid like a card payment: the suspended grant comes back, the members are told.
    assert Grant.objects.get(pk=suspended).status == Grant.Status.PROVISIONING
    # Who is told is decided when the e-mail goes out (portal.mail.mailing_send): queued here.
    queued = [m for m in OutboxMessage.objects.filter(pk__gt=before) if m.func.endswith("mailing_send_job")]
    paid = Mailing.objects.get(template="invoice_paid", refs__invoice=["billing.invoice", invoice.pk])
    assert any(m.args[0] == paid.pk for m in queued), queued


def test_a_transfer_recorded_twice_does_no_harm_twice(db, finance):
    invoice = huge_invoice()
    args = {"invoice_id": invoice.pk, "actor": finance, "amount_krw": 132_000_000, "received_on": date(2026, 11, 10)}
    first, created = bank_transfer_record(**args, reference="KB-0042")
    again, created_again = bank_transfer_record(**args, reference="KB-0042")
    assert (created, created_again, first.pk) == (True, False, again.pk)
    assert BankTransfer.objects.count() == 1
    invoice.refresh_from_db()
    assert invoice.status == I.PAID and invoice.events.filter(new_status=I.PAID).count() == 1
    # Another reference for an invoice already paid is refused: finance pays that money back.
    with pytest.raises(PortalError):
        bank_transfer_record(**args, reference="KB-0043")
    assert BankTransfer.objects.count() == 1


def test_a_transfer_for_another_amount_is_refused_and_the_form_keeps_what_was_typed(db, client, finance):
    invoice = huge_invoice()
    client.force_login(finance)
    response = client.post(
        f"/admin/billing/invoice/{invoice.pk}/transfer/",
        {"amount_krw": "100000000", "received_on": "2026-11-10", "reference": "KB-0042"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "132,000,000" in text and 'value="KB-0042"' in text
    invoice.refresh_from_db()
    assert invoice.status == I.OPEN and not BankTransfer.objects.exists()


def test_someone_without_the_finance_permission_cannot_record_a_transfer(db, client):
    invoice = huge_invoice()
    viewer = staff_user("viewer@centre.kr", "billing.view_invoice")
    client.force_login(viewer)
    assert (
        f"/admin/billing/invoice/{invoice.pk}/transfer/"
        not in client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    )
    url = f"/admin/billing/invoice/{invoice.pk}/transfer/"
    data = {"amount_krw": "132000000", "received_on": "2026-11-10", "reference": "KB-0042"}
    assert client.get(url).status_code == 403
    assert client.post(url, data).status_code == 403
    with pytest.raises(PortalError):
        bank_transfer_record(
            invoice_id=invoice.pk, actor=viewer, amount_krw=132_000_000, received_on=date(2026, 11, 10), reference="x"
        )
    invoice.refresh_from_db()
    assert invoice.status == I.OPEN and not BankTransfer.objects.exists()


def small_final_month():
    """₩55 in November and nothing afterwards: the organisation's last month."""
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    assert invoice.status == I.CARRIED
    return invoice


def test_finance_sees_carried_amounts_waiting_and_settles_the_last_one_by_transfer(db, client, finance):
    invoice = small_final_month()
    client.force_login(finance)
    # Admin → Billing → Invoices, filter "carried forward: waiting for a later invoice".
    waiting = client.get("/admin/billing/invoice/?carried=waiting").content.decode()
    assert invoice.number in waiting
    assert invoice.number not in client.get("/admin/billing/invoice/?carried=collected").content.decode()
    assert (
        client.post(
            f"/admin/billing/invoice/{invoice.pk}/transfer/",
            {"amount_krw": "55", "received_on": "2026-11-05", "reference": "IBK-77"},
        ).status_code
        == 302
    )
    invoice.refresh_from_db()
    assert invoice.status == I.PAID
    # Nothing is left to carry: a later invoice of the organisation collects nothing more.
    grant = invoice.lines.get().grant
    grant.access_intervals.create(
        gpu_count=1, opened_at=at(2, 9, month=3, year=2027), closed_at=at(2, 19, month=3, year=2027)
    )
    march, _ = invoice_issue(organisation_id=invoice.organisation_id, month=date(2027, 3, 1), today=date(2027, 4, 1))
    assert (march.carried_krw, march.amount_due_krw) == (0, 6600)


def test_finance_writes_the_last_small_amount_off_with_a_credit_note_and_a_reason(db, client, finance):
    invoice = small_final_month()
    client.force_login(finance)
    change = client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{invoice.pk}/write-off/" in change
    response = client.post(
        f"/admin/billing/invoice/{invoice.pk}/write-off/", {"reason": "organisation closed its account"}
    )
    assert response.status_code == 302
    invoice.refresh_from_db()
    note = CreditNote.objects.get()
    assert invoice.status == I.WRITTEN_OFF
    assert (note.invoice_id, note.supply_krw, note.vat_krw, note.total_krw) == (invoice.pk, -50, -5, -55)
    assert invoice.events.filter(
        new_status=I.WRITTEN_OFF, actor=finance, reason__contains="closed its account"
    ).exists()
    with pytest.raises(PortalError):  # settled: nothing more to write off or to record
        invoice_write_off(invoice_id=invoice.pk, actor=finance, reason="again")
    with pytest.raises(PortalError):
        bank_transfer_record(
            invoice_id=invoice.pk, actor=finance, amount_krw=55, received_on=date(2026, 11, 5), reference="y"
        )


def test_an_amount_already_collected_by_a_later_invoice_cannot_be_settled_on_its_own(db, finance):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5)), (at(2, 9, month=12), at(2, 19, month=12))])
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=date(2027, 1, 1))
    with pytest.raises(PortalError):
        bank_transfer_record(
            invoice_id=nov.pk, actor=finance, amount_krw=55, received_on=date(2026, 11, 5), reference="z"
        )
    with pytest.raises(PortalError):
        invoice_write_off(invoice_id=nov.pk, actor=finance, reason="no")
    # Paying December by transfer settles both, for the amount due (6,600 + 55).
    bank_transfer_record(
        invoice_id=dec.pk, actor=finance, amount_krw=6655, received_on=date(2026, 11, 5), reference="z"
    )
    assert set(Invoice.objects.filter(organisation=org).values_list("status", flat=True)) == {I.PAID}


def test_a_refusal_by_stripe_for_a_too_large_amount_makes_it_payable_by_transfer_not_overdue(
    db, localstripe, monkeypatch
):
    # Stripe's maximum lower than the portal believes: Stripe itself refuses ₩132,000,000.
    monkeypatch.setattr(stripe_client, "MAX_CHARGE_KRW", 200_000_000)
    invoice = huge_invoice(localstripe=True)
    assert invoice.status == I.OPEN and not invoice.transfer_only
    Invoice.objects.filter(pk=invoice.pk).update(due_on=timezone.localdate() - timedelta(days=1))
    assert payments.invoice_charge(invoice_id=invoice.pk) == "amount refused"
    invoice.refresh_from_db()
    assert invoice.transfer_only and invoice.status == I.OPEN and invoice.payment_attempts == 0
    assert invoice.due_on > timezone.localdate() and not invoice.is_overdue()
    assert invoice.events.filter(reason__contains="amount_too_large").exists()
    assert payments.invoice_charge(invoice_id=invoice.pk) == "by bank transfer"


def test_writing_off_a_small_amount_writes_off_what_was_carried_into_it_too(db, finance):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5)), (at(2, 9, month=12), at(2, 9, 5, month=12))])
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=date(2027, 1, 1))
    assert (dec.status, dec.amount_due_krw) == (I.CARRIED, 110)
    notes = invoice_write_off(invoice_id=dec.pk, actor=finance, reason="company dissolved")
    assert sorted((n.invoice_id, n.total_krw) for n in notes) == sorted([(nov.pk, -55), (dec.pk, -55)])
    assert set(Invoice.objects.filter(organisation=org).values_list("status", flat=True)) == {I.WRITTEN_OFF}


def test_the_transfer_page_names_the_buyer_in_the_readers_language(db, client, finance):
    """ "데모AI스타트업 owes ₩171,072" on the English page: the English name frozen at issue is
    used where the reader reads English."""
    invoice = huge_invoice()
    Invoice.objects.filter(pk=invoice.pk).update(buyer_name="한국에이아이", buyer_name_en="Korea AI Inc.")
    client.force_login(finance)
    english = client.get(f"/admin/billing/invoice/{invoice.pk}/transfer/", HTTP_ACCEPT_LANGUAGE="en")
    assert "Korea AI Inc. owes" in english.content.decode()
    korean = client.get(f"/admin/billing/invoice/{invoice.pk}/transfer/", HTTP_ACCEPT_LANGUAGE="ko")
    assert "한국에이아이" in korean.content.decode() and "Korea AI Inc." not in korean.content.decode()
