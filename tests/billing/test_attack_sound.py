"""ATTACK CHECKS THAT HOLD (branch `attack1`): money invariants across several months with
carried-forward amounts, voids, re-issues, bank transfers and late Stripe events. These pass on
the merged code; they are kept as regression tests of what the review checked."""

from __future__ import annotations

from datetime import date

import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.models import BankTransfer, Invoice, StripeEvent
from billing.services.invoices import invoice_issue, invoice_reissue, invoice_void, organisation_has_overdue_invoice
from billing.services.payments import stripe_event_process
from billing.services.transfers import bank_transfer_record
from tests.billing.helpers import at, grant_for, race, rate_card, startup
from tests.portal.test_review_admin import staff_user

OCT, NOV, DEC, JAN = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)
PAID_ON = date(2026, 11, 20)  # a transfer is never recorded as received after today (no frozen clock)
I = Invoice.Status  # noqa: E741
FINANCE = ("billing.void_invoice", "billing.reissue_invoice", "billing.record_transfer")


def three_months(org, *, nov_small: bool = False):
    """October ₩55 (5 min), November ₩6,600 (10 h) or ₩55, December ₩6,600."""
    nov = (at(2, 9, month=11), at(2, 9, 5, month=11)) if nov_small else (at(2, 9, month=11), at(2, 19, month=11))
    grant_for(
        org, intervals=[(at(2, 9, month=10), at(2, 9, 5, month=10)), nov, (at(2, 9, month=12), at(2, 19, month=12))]
    )


def invariant(org) -> None:
    """Every won billed once (on its month's live invoice) and collected once (paid by exactly
    one invoice's amount due, or by its own)."""
    live = Invoice.objects.filter(organisation=org).exclude(status=I.VOID)
    billed = live.aggregate(s=Sum("total_krw"))["s"]
    # What is collected: the amount due of each invoice that is not itself collected by another.
    collected = sum(x.amount_due_krw for x in live.filter(carried_into__isnull=True))
    assert billed == collected
    for x in live.filter(status=I.CARRIED, carried_into__isnull=False):
        assert x.carried_into.status != I.VOID


def test_voiding_the_collecting_invoice_then_a_later_month_then_the_reissue_bills_and_collects_each_won_once(db):
    rate_card("startup", 3000)
    org, _ = startup()
    three_months(org)
    finance = staff_user("f@centre.kr", *FINANCE)
    octo, _ = invoice_issue(organisation_id=org.pk, month=OCT, today=NOV)
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    assert nov.amount_due_krw == 6655
    invoice_void(invoice_id=nov.pk, actor=finance, reason="wrong")
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=JAN)
    assert dec.amount_due_krw == 6655  # December collects October now
    new_nov = invoice_reissue(invoice_id=nov.pk, actor=finance, reason="fixed", today=JAN)
    assert new_nov.amount_due_krw == 6600  # not a second time
    invariant(org)
    for inv in (new_nov, dec):
        bank_transfer_record(
            invoice_id=inv.pk, actor=finance, amount_krw=inv.amount_due_krw, received_on=PAID_ON, reference=f"T{inv.pk}"
        )
    octo.refresh_from_db()
    assert octo.status == I.PAID and octo.carried_into_id == dec.pk
    assert BankTransfer.objects.aggregate(s=Sum("amount_krw"))["s"] == 55 + 6600 + 6600
    invariant(org)


def test_a_carried_chain_voided_and_reissued_is_collected_once_by_the_next_invoice(db):
    rate_card("startup", 3000)
    org, _ = startup()
    three_months(org, nov_small=True)
    finance = staff_user("f@centre.kr", *FINANCE)
    invoice_issue(organisation_id=org.pk, month=OCT, today=NOV)
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    assert (nov.status, nov.amount_due_krw) == (I.CARRIED, 110)
    invoice_void(invoice_id=nov.pk, actor=finance, reason="wrong")
    new_nov = invoice_reissue(invoice_id=nov.pk, actor=finance, reason="fixed", today=DEC)
    assert (new_nov.status, new_nov.amount_due_krw) == (I.CARRIED, 110)
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=JAN)
    assert dec.amount_due_krw == 6710
    invariant(org)
    bank_transfer_record(invoice_id=dec.pk, actor=finance, amount_krw=6710, received_on=PAID_ON, reference="T1")
    statuses = dict(Invoice.objects.filter(organisation=org).values_list("pk", "status"))
    assert statuses.pop(nov.pk) == I.VOID and set(statuses.values()) == {I.PAID}
    assert not organisation_has_overdue_invoice(org.pk)


def _event(event_id: str, invoice: Invoice, amount: int, customer=None) -> int:
    intent = {
        "id": f"pi_{event_id}",
        "object": "payment_intent",
        "amount": amount,
        "currency": "krw",
        "customer": customer,
        "metadata": {"kind": "invoice", "invoice_id": str(invoice.pk), "organisation_id": str(invoice.organisation_id)},
    }
    return StripeEvent.objects.create(
        event_id=event_id, type="payment_intent.succeeded", created=timezone.now(), payload={"data": {"object": intent}}
    ).pk


def test_a_late_payment_of_the_void_invoice_and_a_bare_total_pay_nothing_after_a_reissue(db):
    rate_card("startup", 3000)
    org, _ = startup()
    three_months(org)
    finance = staff_user("f@centre.kr", *FINANCE)
    invoice_issue(organisation_id=org.pk, month=OCT, today=NOV)
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    invoice_void(invoice_id=nov.pk, actor=finance, reason="wrong")
    new_nov = invoice_reissue(invoice_id=nov.pk, actor=finance, reason="fixed", today=DEC)
    assert stripe_event_process(event_pk=_event("evt_old", nov, 6655)) == "invoice void: payment to refund"
    assert stripe_event_process(event_pk=_event("evt_bare", new_nov, 6600)) == "invoice mismatch"
    new_nov.refresh_from_db()
    assert new_nov.status == I.OPEN
    assert stripe_event_process(event_pk=_event("evt_due", new_nov, 6655)) == "invoice paid"
    assert set(Invoice.objects.filter(organisation=org).exclude(pk=nov.pk).values_list("status", flat=True)) == {I.PAID}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_voiding_the_collecting_invoice_while_the_next_month_is_invoiced_collects_the_small_amount_once(attempt):
    rate_card("startup", 3000)
    org, _ = startup()
    three_months(org)
    grant_for(org, intervals=[(at(2, 9, month=1, year=2027), at(2, 19, month=1, year=2027))])
    finance = staff_user(f"v{attempt}@centre.kr", *FINANCE)
    invoice_issue(organisation_id=org.pk, month=OCT, today=NOV)
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)  # collects October
    invoice_issue(organisation_id=org.pk, month=DEC, today=JAN)
    outcomes = race(
        lambda: invoice_void(invoice_id=nov.pk, actor=finance, reason="wrong"),
        lambda: invoice_issue(organisation_id=org.pk, month=JAN, today=date(2027, 2, 1)),
    )
    assert outcomes == ["done", "done"]
    invariant(org)
