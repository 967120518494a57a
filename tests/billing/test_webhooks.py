"""The webhook: signed events are stored once and processed by a job; forged, replayed, stale and
out-of-order events change nothing."""

from __future__ import annotations

import time
from datetime import date

import pytest

from billing.models import BillingAccount, HourPack, Invoice, StripeEvent
from billing.services.invoices import invoice_issue
from billing.services.payments import stripe_event_process
from portal.models import OutboxMessage
from tests.billing.conftest import event, signed
from tests.billing.helpers import at, grant_for, hour_pack, rate_card, startup

URL = "/billing/stripe/webhook/"


@pytest.fixture
def pack(db, stripe_settings):
    org, owner = startup()
    return hour_pack(org, owner, checkout_session_id="cs_test_pack")


def completed(pack: HourPack, **changes) -> dict:
    obj = {
        "id": "cs_test_pack",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "amount_total": pack.total_krw,
        "currency": "krw",
        "metadata": {"kind": "hour_pack", "hour_pack_id": str(pack.pk)},
    }
    obj.update(changes)
    return obj


def post(client, body: bytes, signature: str):
    return client.post(URL, body, content_type="application/json", headers={"Stripe-Signature": signature})


def process_all() -> list[str]:
    return [stripe_event_process(event_pk=e.pk) for e in StripeEvent.objects.order_by("pk")]


def test_a_signed_checkout_completion_credits_the_pack_once(client, pack, jobs):
    body, sig = signed(event("evt_1", "checkout.session.completed", completed(pack)))
    with jobs.committed():
        assert post(client, body, sig).status_code == 200
    assert OutboxMessage.objects.filter(func="billing.jobs.stripe_event_job").count() == 1
    jobs.run()
    pack.refresh_from_db()
    assert pack.status == HourPack.Status.PAID and pack.paid_at


def test_a_replayed_event_is_answered_but_not_processed_again(client, pack):
    body, sig = signed(event("evt_1", "checkout.session.completed", completed(pack)))
    assert post(client, body, sig).status_code == 200
    assert post(client, body, sig).status_code == 200
    assert StripeEvent.objects.count() == 1
    assert OutboxMessage.objects.filter(func="billing.jobs.stripe_event_job").count() == 1


@pytest.mark.parametrize(
    "how",
    ["wrong secret", "tampered body", "no signature", "stale timestamp"],
)
def test_a_forged_or_stale_webhook_changes_nothing(client, pack, how):
    good = event("evt_forged", "checkout.session.completed", completed(pack))
    if how == "wrong secret":
        body, sig = signed(good, secret="whsec_attacker")
    elif how == "tampered body":
        body, sig = signed(good)
        body = body.replace(b'"paid"', b'"PAID"', 1)
    elif how == "no signature":
        body, sig = signed(good)
        sig = ""
    else:
        body, sig = signed(good, timestamp=int(time.time()) - 3600)
    assert post(client, body, sig).status_code == 400
    assert StripeEvent.objects.count() == 0
    pack.refresh_from_db()
    assert pack.status == HourPack.Status.PENDING


def test_an_expiry_arriving_after_the_completion_leaves_the_pack_paid(client, pack):
    post(client, *signed(event("evt_2", "checkout.session.completed", completed(pack))))
    post(client, *signed(event("evt_1", "checkout.session.expired", completed(pack, payment_status="unpaid"))))
    assert process_all() == ["pack credited", "pack already settled"]
    pack.refresh_from_db()
    assert pack.status == HourPack.Status.PAID


def test_a_completion_for_another_amount_or_session_credits_nothing(client, pack):
    post(client, *signed(event("evt_a", "checkout.session.completed", completed(pack, amount_total=100))))
    post(client, *signed(event("evt_b", "checkout.session.completed", completed(pack, id="cs_other"))))
    assert process_all() == ["pack mismatch", "pack mismatch"]
    pack.refresh_from_db()
    assert pack.status == HourPack.Status.PENDING


def test_a_failure_arriving_after_the_payment_leaves_the_invoice_paid(client, db, stripe_settings):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    intent = {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": invoice.total_krw,
        "currency": "krw",
        "metadata": {"kind": "invoice", "invoice_id": str(invoice.pk)},
        "last_payment_error": {"message": "Your card was declined."},
    }
    post(client, *signed(event("evt_ok", "payment_intent.succeeded", intent)))
    post(client, *signed(event("evt_late_fail", "payment_intent.payment_failed", intent)))
    assert process_all() == ["invoice paid", "payment failed"]
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.last_payment_error == ""


def test_an_invoice_paid_through_checkout_is_marked_paid(client, db, stripe_settings):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    BillingAccount.objects.create(organisation=org, stripe_customer_id="cus_inv")
    obj = {
        "id": "cs_inv",
        "object": "checkout.session",
        "customer": "cus_inv",
        "payment_status": "paid",
        "amount_total": invoice.total_krw,
        "currency": "krw",
        "metadata": {"kind": "invoice", "invoice_id": str(invoice.pk)},
    }
    post(client, *signed(event("evt_inv", "checkout.session.completed", obj)))
    assert process_all() == ["invoice paid"]
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
