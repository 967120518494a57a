"""Payments against localstripe: the organisation's customer, a saved card, off-session charges
of an invoice with a good and a declining card, and localstripe's own signed webhooks."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
import requests
from django.core import mail
from django.utils import timezone

from billing import stripe_client
from billing.models import BillingAccount, Invoice, StripeEvent
from billing.services import payments
from billing.services.invoices import invoice_issue
from tests.billing.conftest import WEBHOOK_SECRET
from tests.billing.helpers import at, grant_for, rate_card, startup

NOV = date(2026, 11, 1)


def invoice_with_card(card: str) -> Invoice:
    rate_card("startup", 3000)
    org, owner = startup()
    account = payments.billing_account_get_or_create(organisation=org, email=owner.email)
    pm = stripe_client.payment_method_attach(customer=account.stripe_customer_id, payment_method=card)
    BillingAccount.objects.filter(pk=account.pk).update(default_payment_method=pm)
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])  # 10 h x 3,000 x 20 % = 6,000 + VAT 600
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    return invoice


def test_an_organisation_gets_one_stripe_customer(db, localstripe):
    org, owner = startup()
    first = payments.billing_account_get_or_create(organisation=org, email=owner.email)
    again = payments.billing_account_get_or_create(organisation=org, email=owner.email)
    assert first.pk == again.pk and first.stripe_customer_id.startswith("cus_")
    got = requests.get(f"{localstripe}/v1/customers/{first.stripe_customer_id}", auth=("sk_test_portal", ""), timeout=5)
    assert got.json()["metadata"] == {"organisation_id": str(org.pk)}


def test_an_invoice_is_charged_off_session_to_the_saved_card(db, localstripe, jobs):
    invoice = invoice_with_card("pm_card_visa")
    assert invoice.total_krw == 6600
    with jobs.committed():
        assert payments.invoice_charge(invoice_id=invoice.pk) == "paid"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts) == (Invoice.Status.PAID, 1)
    jobs.run()
    assert any("INV-2026-000001" in m.subject and m.to == [m.to[0]] for m in mail.outbox)
    # A second run of the same job charges nothing more.
    assert payments.invoice_charge(invoice_id=invoice.pk) == "not open"


def test_a_declined_card_leaves_the_invoice_open_tells_members_and_is_retried_later(db, localstripe, jobs):
    invoice = invoice_with_card("pm_card_chargeCustomerFail")
    with jobs.committed():
        assert payments.invoice_charge(invoice_id=invoice.pk) == "declined"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts) == (Invoice.Status.OPEN, 1)
    assert invoice.last_payment_error
    jobs.run()
    billing_member = invoice.organisation.memberships.get(role="billing").user.email
    failed = [m for m in mail.outbox if m.to == [billing_member] and "실패" in m.subject]
    assert failed, [m.subject for m in mail.outbox]
    assert payments.invoices_charge_due() == []  # not before PAYMENT_RETRY_HOURS
    later = timezone.now() + timedelta(hours=25)
    assert payments.invoices_charge_due(now=later) == [invoice.pk]
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts) == (Invoice.Status.OPEN, 2)


@pytest.mark.django_db(transaction=True)
def test_localstripes_signed_webhook_is_verified_and_stored_once(localstripe, live_server):
    requests.post(
        f"{localstripe}/_config/webhooks/portal",
        data={"url": f"{live_server.url}/billing/stripe/webhook/", "secret": WEBHOOK_SECRET},
        timeout=5,
    )
    invoice = invoice_with_card("pm_card_visa")
    assert payments.invoice_charge(invoice_id=invoice.pk) == "paid"
    # localstripe sends each event a second after it happened, to the webhooks registered then:
    # an event of an earlier test may arrive too, so look for this invoice's.
    mine = StripeEvent.objects.filter(
        type="payment_intent.succeeded", payload__data__object__metadata__invoice_id=str(invoice.pk)
    )
    deadline = time.time() + 15
    while time.time() < deadline and not mine.exists():
        time.sleep(0.2)
    stored = mine.get()
    assert payments.stripe_event_process(event_pk=stored.pk) == "invoice paid"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.events.filter(new_status="paid").count() == 1
    # Later tests' events go nowhere (localstripe keeps its webhooks).
    requests.post(
        f"{localstripe}/_config/webhooks/portal", data={"url": "http://127.0.0.1:9/", "secret": "x"}, timeout=5
    )


def test_a_card_saved_through_checkout_becomes_the_default_for_off_session_charges(db, localstripe):
    org, owner = startup()
    account = payments.billing_account_get_or_create(organisation=org, email=owner.email)
    auth = ("sk_test_portal", "")
    si = requests.post(
        f"{localstripe}/v1/setup_intents", data={"customer": account.stripe_customer_id}, auth=auth, timeout=5
    ).json()
    requests.post(
        f"{localstripe}/v1/setup_intents/{si['id']}/confirm",
        data={"payment_method": "pm_card_visa"},
        auth=auth,
        timeout=5,
    )
    session = {
        "id": "cs_setup",
        "object": "checkout.session",
        "mode": "setup",
        "customer": account.stripe_customer_id,
        "setup_intent": si["id"],
        "metadata": {"kind": "card", "organisation_id": str(org.pk)},
    }
    stored = StripeEvent.objects.create(
        event_id="evt_setup",
        type="checkout.session.completed",
        created=timezone.now(),
        payload={"data": {"object": session}},
    )
    assert payments.stripe_event_process(event_pk=stored.pk) == "card saved"
    account.refresh_from_db()
    assert account.has_card and account.default_payment_method.startswith("pm_")
