"""ATTACK FINDINGS (review of carried-forward amounts, bank transfers, re-issues and mailings).

Each test reproduces one defect found by the attacker/reviewer branch `attack1` and FAILS on the
code as merged: it states the behaviour a user (finance, an owner, the operators) should see. The
integrator fixes the production code and keeps the test."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from allocations.models import Grant
from billing.models import Invoice
from billing.services.consequences import OVERDUE_REASON, invoices_enforce_overdue
from billing.services.invoices import (
    invoice_issue,
    invoice_mark_paid,
    invoice_payment_failed,
    organisation_has_overdue_invoice,
)
from billing.services.transfers import bank_transfer_record
from portal.errors import PortalError
from portal.mail import mailing_send
from portal.models import Mailing
from tests.billing.helpers import at, grant_for, rate_card, run_recording, startup
from tests.portal.test_review_admin import staff_user

NOV, DEC, JAN = date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)
I = Invoice.Status  # noqa: E741
G = Grant.Status
AMOUNT_TOO_SMALL = (
    400,
    {
        "type": "invalid_request_error",
        "code": "amount_too_small",
        "param": "line_items[0][price_data][unit_amount]",
        "message": "Amount must convert to at least 50 cents.",
    },
    "req_too_small_1",
)


def carried_then_collected():
    """November ₩55 (5 minutes at a 20 % co-payment) carried forward, December ₩6,600 (10 h)
    collecting it: December's amount due is ₩6,655."""
    rate_card("startup", 3000)
    org, owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5)), (at(2, 9, month=12), at(2, 19, month=12))])
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=JAN)
    nov.refresh_from_db()
    assert (nov.status, nov.carried_into_id, dec.status, dec.amount_due_krw) == (I.CARRIED, dec.pk, I.OPEN, 6655)
    return org, owner, nov, dec


def _gauge(name: str) -> float:
    from portal.metrics import PortalCollector

    for family in PortalCollector()._invoices(timezone.now()):
        if family.name == name:
            return family.samples[0].value
    raise AssertionError(name)


# -- /metrics ------------------------------------------------------------------------------------


def test_the_overdue_krw_metric_counts_the_carried_amounts_an_overdue_invoice_collects(db):
    # December is overdue: the organisation owes ₩6,655 past due (its ₩6,600 and November's ₩55,
    # which is not due on its own and so is counted nowhere else). The gauge says ₩6,600.
    _org, _owner, _nov, dec = carried_then_collected()
    Invoice.objects.filter(pk=dec.pk).update(due_on=timezone.localdate() - timedelta(days=20))
    assert _gauge("gpu_portal_invoices_overdue") == 1
    assert _gauge("gpu_portal_invoices_overdue_krw") == 6655


# -- bank transfers ------------------------------------------------------------------------------


def test_one_bank_transfer_recorded_on_two_invoices_of_the_same_amount_does_not_pay_both(db):
    # Two months of ₩6,600 each. The clerk records the bank's transfer TX-20261105-001 on
    # November, then (wrong month, or a second clerk working from the same statement line)
    # records the very same transfer (same reference, day and amount) on December. One receipt of
    # ₩6,600 must not settle ₩13,200; a paid invoice cannot be voided to undo it.
    rate_card("startup", 3000)
    org, _owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19)), (at(2, 9, month=12), at(2, 19, month=12))])
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=JAN)
    assert (nov.amount_due_krw, dec.amount_due_krw) == (6600, 6600)
    finance = staff_user("finance@centre.kr", "billing.record_transfer")
    first = {"actor": finance, "amount_krw": 6600, "received_on": date(2026, 11, 5), "reference": "TX-20261105-001"}
    bank_transfer_record(invoice_id=nov.pk, **first)
    with pytest.raises(PortalError):
        bank_transfer_record(invoice_id=dec.pk, **first)
    dec.refresh_from_db()
    assert dec.status == I.OPEN


# -- CSV export ----------------------------------------------------------------------------------


def test_the_invoice_csv_shows_the_amount_due_and_which_invoice_collected_a_carried_one(client, db):
    # Finance reconciles Stripe's payout (one charge of ₩6,655 described INV-2027-000001) with the
    # export: the collecting invoice's row must show the ₩6,655 charged, and November's row the
    # invoice that collected it; today the export has neither (total 6600; "carried", no link).
    _org, _owner, nov, dec = carried_then_collected()
    client.force_login(staff_user("finance@centre.kr", "billing.view_invoice", "billing.change_invoice"))
    export = client.post("/admin/billing/invoice/", {"action": "export_csv", "_selected_action": [nov.pk, dec.pk]})
    rows = list(csv.reader(io.StringIO(export.content.decode().lstrip("\ufeff"))))
    header, body = rows[0], {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert "amount_due_krw" in header
    assert body[dec.number]["amount_due_krw"] == "6655"
    assert dec.number in body[nov.number].values()


# -- Stripe refusing the amount of an overdue invoice ---------------------------------------------


def open_1100_won_invoice(settings):
    """A startup's open ₩1,100 invoice (100 minutes at a 20 % co-payment) for its grant on a
    node; overdue invoices suspend after 14 days."""
    settings.INVOICE_OVERDUE_SUSPEND_DAYS = 14
    rate_card("startup", 3000)
    org, owner = startup()
    grant = grant_for(org, intervals=[(at(2, 9), at(2, 10, 40))], node=True)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    assert (invoice.status, invoice.amount_due_krw) == (I.OPEN, 1100)
    return org, owner, grant, invoice


def twenty_days_overdue(invoice) -> None:
    Invoice.objects.filter(pk=invoice.pk).update(due_on=timezone.localdate() - timedelta(days=20))


def overdue_and_suspended(settings):
    """The ₩1,100 invoice 20 days overdue: the grant is suspended for it."""
    org, owner, grant, invoice = open_1100_won_invoice(settings)
    twenty_days_overdue(invoice)
    assert invoices_enforce_overdue() == [grant.pk]
    grant.refresh_from_db()
    assert (grant.status, grant.status_reason) == (G.SUSPENDED, OVERDUE_REASON)
    return org, owner, grant, invoice


def test_an_owner_paying_an_overdue_invoice_stripe_finds_too_small_is_not_told_to_pay_by_bank_transfer(
    client, db, recorder, settings
):
    # Stripe's effective minimum rose with the exchange rate (docs/billing.md: "raise it if Stripe
    # starts refusing amounts above it"): the owner clicks Pay, Stripe answers amount_too_small.
    # The invoice becomes carried forward (not due, added to the next invoice), yet the page
    # says "This invoice is paid by bank transfer, not by card."
    _org, owner, _grant, invoice = overdue_and_suspended(settings)
    recorder.checkout_refusal = AMOUNT_TOO_SMALL
    client.force_login(owner)
    response = client.post(f"/billing/invoices/{invoice.pk}/pay/", HTTP_ACCEPT_LANGUAGE="en", follow=True)
    invoice.refresh_from_db()
    assert invoice.status == I.CARRIED
    assert "paid by bank transfer" not in response.content.decode()


def test_grants_suspended_for_an_overdue_invoice_come_back_when_stripe_refuses_it_as_too_small(
    client, db, recorder, settings
):
    # Same refusal: the invoice is now carried forward, "never overdue, suspends nothing", and it
    # has no Pay button any more. Nothing is overdue (eligibility passes), but the grant stays
    # suspended for an overdue invoice; a suspended grant has no usage, so no next invoice comes to
    # collect the amount and bring it back: the organisation is locked out with nothing to pay.
    org, owner, grant, invoice = overdue_and_suspended(settings)
    recorder.checkout_refusal = AMOUNT_TOO_SMALL
    client.force_login(owner)
    client.post(f"/billing/invoices/{invoice.pk}/pay/", HTTP_ACCEPT_LANGUAGE="en")
    invoice.refresh_from_db()
    assert invoice.status == I.CARRIED and not organisation_has_overdue_invoice(org.pk)
    grant.refresh_from_db()
    assert grant.status != G.SUSPENDED


def test_grants_suspended_for_an_overdue_invoice_come_back_when_a_too_large_refusal_gives_it_a_new_due_date(
    db, settings
):
    # A refusal for the amount (amount_too_large) moves the due date INVOICE_DUE_DAYS ahead "so
    # the refusal itself never makes it overdue": the invoice is no longer overdue, yet the grant
    # suspended for it stays suspended until the transfer arrives.
    from billing.services.invoices import invoice_card_amount_refused

    org, _owner, grant, invoice = overdue_and_suspended(settings)
    invoice_card_amount_refused(invoice_id=invoice.pk, code="amount_too_large", error="Amount must be no more than")
    invoice.refresh_from_db()
    assert invoice.transfer_only and not organisation_has_overdue_invoice(org.pk)
    grant.refresh_from_db()
    assert grant.status != G.SUSPENDED


# -- mail decided when sent, content stale ---------------------------------------------------------


def test_a_payment_failed_mail_sent_after_the_invoice_was_paid_does_not_tell_the_members_it_is_still_open(db):
    # The decline's e-mail waited (mail server down: the job is retried later, docs/operations);
    # meanwhile the billing member paid through Checkout. The mailing decides its recipients when
    # sent, but still sends "We could not charge ₩6,600 ... The invoice stays open; we will try
    # again" for an invoice that is paid (right after "Invoice ... is paid").
    rate_card("startup", 3000)
    org, _owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    invoice_payment_failed(invoice_id=invoice.pk, error="Your card was declined.")
    failed = Mailing.objects.get(template="invoice_payment_failed")
    invoice_mark_paid(invoice_id=invoice.pk, reason="paid through Checkout", payment_ref="pi_later")
    mail.outbox.clear()
    mailing_send(mailing_id=failed.pk)
    assert not [m for m in mail.outbox if "stays open" in m.body or "미납" in m.body]


# -- the minimum raised after issue ----------------------------------------------------------------


def test_an_open_invoice_below_a_raised_minimum_is_carried_forward_with_or_without_a_saved_card(db, settings):
    # docs/billing.md: raise STRIPE_MIN_CHARGE_KRW "if Stripe starts refusing amounts above it";
    # below the minimum an invoice is "carried forward: not charged, not due, never overdue,
    # suspends nothing", and invoice_charge does carry an open invoice forward when the minimum
    # was raised after issue. Without a saved card nothing ever calls invoice_charge: the same
    # ₩1,100 invoice stays open, loses its Pay button (card_payable is false), becomes overdue
    # and suspends the grant, where an organisation with a card would owe nothing now.
    _org, _owner, grant, invoice = open_1100_won_invoice(settings)
    settings.STRIPE_MIN_CHARGE_KRW = 1500
    twenty_days_overdue(invoice)
    invoices_enforce_overdue()
    grant.refresh_from_db()
    assert grant.status != G.SUSPENDED


# -- what finance and the customer are shown -------------------------------------------------------


def test_the_reissue_page_shows_the_carried_amounts_the_reissue_will_collect(client, db):
    # December (₩6,600) collected November's ₩55; finance voids December and opens "Re-issue the
    # month": the page compares ₩6,600 (void) with ₩6,600 (now) but the re-issue it makes asks
    # ₩6,655 (it collects November again). The amount due is not on the page.
    from billing.services.invoices import invoice_void

    _org, _owner, _nov, dec = carried_then_collected()
    finance = staff_user("f@centre.kr", "billing.view_invoice", "billing.void_invoice", "billing.reissue_invoice")
    invoice_void(invoice_id=dec.pk, actor=finance, reason="wrong buyer name")
    client.force_login(finance)
    page = client.get(f"/admin/billing/invoice/{dec.pk}/reissue/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "6,655" in page


def test_a_void_invoice_is_not_listed_to_the_customer_as_an_amount_due(client, db):
    # After December (collecting November's ₩55) is voided, the invoices page still prints
    # "+ ₩55 carried forward = ₩6,655 due" on the void row, while November says it will be added
    # to the next invoice: the customer reads ₩55 owed twice and a void invoice as due.
    from billing.services.invoices import invoice_void

    org, owner, _nov, dec = carried_then_collected()
    invoice_void(invoice_id=dec.pk, actor=staff_user("f@centre.kr", "billing.void_invoice"), reason="duplicate")
    client.force_login(owner)
    page = client.get(f"/billing/invoices/?organisation={org.pk}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "₩6,655 due" not in page


def test_the_members_are_told_when_a_refusal_makes_their_invoice_payable_only_by_bank_transfer(db):
    # The invoice e-mail said "Due on …: a saved card is charged automatically". Stripe then
    # refuses the charge for its amount (amount_too_large): the invoice becomes payable by bank
    # transfer only, with a new due date, and will be overdue (and suspend the grants) if no
    # transfer arrives; but no e-mail tells the billing members to transfer, nor to which account.
    from billing.services.invoices import invoice_card_amount_refused

    rate_card("startup", 3000)
    org, _owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    mailing_send(mailing_id=Mailing.objects.get(organisation=org, template="invoice_issued").pk)  # sent, card text
    before = Mailing.objects.filter(organisation=org).count()
    invoice_card_amount_refused(invoice_id=invoice.pk, code="amount_too_large", error="Amount must be no more than")
    invoice.refresh_from_db()
    assert invoice.transfer_only and invoice.status == I.OPEN
    assert Mailing.objects.filter(organisation=org).count() > before


# -- lock order: the run locks the organisation, then invoices; payments lock the invoice first ---


def _slowed(monkeypatch, name: str, *, hold: float = 1.5):
    """Make `billing.services.invoices.<name>` (called by invoice_issue once it holds the
    organisation's row lock: pricing the month, or storing an existing invoice's PDF) take `hold`
    seconds, as a slow ledger does; the returned Event is set when invoice_issue gets there."""
    import threading
    import time

    import billing.services.invoices as invoices

    started = threading.Event()
    original = getattr(invoices, name)

    def slow(*args, **kwargs):
        started.set()
        time.sleep(hold)
        return original(*args, **kwargs)

    monkeypatch.setattr(invoices, name, slow)
    return started


def _at_once(first, second, started) -> list[str]:
    """`first` in one thread; `second` in another once `started` is set. Outcomes as
    `run_recording` writes them: 'done', a PortalError code, or the exception's repr."""
    import threading

    outcomes: list[str] = []
    a = threading.Thread(target=run_recording, args=(first, outcomes))
    a.start()
    assert started.wait(10)
    b = threading.Thread(target=run_recording, args=(second, outcomes))
    b.start()
    a.join()
    b.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_a_transfer_for_a_waiting_small_amount_while_the_run_invoices_the_organisation_does_not_deadlock(
    monkeypatch,
):
    # The run (invoice_issue) locks the organisation, prices December, then locks the carried
    # invoices waiting to be collected. Finance records the transfer for November's waiting ₩110
    # meanwhile: bank_transfer_record locks November, pays it, and the 'paid' Mailing it inserts
    # references the organisation (FOR KEY SHARE, which waits for the run's FOR UPDATE). The run
    # then waits for November: PostgreSQL's deadlock detector kills one of them (the run reports
    # the organisation FAILED for the month, or finance gets a server error).
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(
        org,
        intervals=[
            (at(2, 9, month=10), at(2, 9, 5, month=10)),
            (at(2, 9, month=11), at(2, 9, 5, month=11)),
            (at(2, 9, month=12), at(2, 19, month=12)),
        ],
    )
    finance = staff_user("finance@centre.kr", "billing.record_transfer")
    invoice_issue(organisation_id=org.pk, month=date(2026, 10, 1), today=NOV)
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    assert (nov.status, nov.amount_due_krw) == (I.CARRIED, 110)
    started = _slowed(monkeypatch, "month_statement")
    outcomes = _at_once(
        lambda: invoice_issue(organisation_id=org.pk, month=DEC, today=JAN),
        lambda: bank_transfer_record(invoice_id=nov.pk, actor=finance, amount_krw=110, received_on=NOV, reference="T1"),
        started,
    )
    assert outcomes == ["done", "done"] or sorted(outcomes) == ["collected", "done"], outcomes


@pytest.mark.django_db(transaction=True)
def test_a_card_payment_confirmed_while_the_month_is_rerun_does_not_deadlock(monkeypatch):
    # A rerun of the month (run_invoicing, or the admin's "resume") locks the organisation, then
    # each existing invoice (invoice_document_store). The webhook job confirming the card payment
    # of that invoice locks it first, then inserts the 'paid' Mailing (a key-share lock on the
    # organisation): one of the two is killed as a deadlock.
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    started = _slowed(monkeypatch, "invoice_document_store")
    outcomes = _at_once(
        lambda: invoice_issue(organisation_id=org.pk, month=NOV, today=DEC),
        lambda: invoice_mark_paid(invoice_id=invoice.pk, reason="payment succeeded", payment_ref="pi_1"),
        started,
    )
    assert outcomes == ["done", "done"], outcomes
