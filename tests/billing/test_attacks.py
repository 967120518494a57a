"""The billing pages and webhooks attacked as their users would: a billing member removed from
the organisation, an owner of another organisation, signed events naming someone else's invoice,
a payment for a void invoice, replays, and two invoicing runs at once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import connection

from billing.models import BillingAccount, HourPack, Invoice, InvoiceDocument
from billing.services.invoices import invoice_issue, invoice_void
from billing.services.payments import stripe_event_process
from portal.models import Membership
from tests.billing.conftest import event, signed
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.portal.test_review_admin import staff_user

URL = "/billing/stripe/webhook/"


def issue(org) -> Invoice:
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])  # 10 h x 3,000 x 20 % = 6,000 + VAT
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    return invoice


@pytest.fixture
def two(db, stripe_settings):
    """Organisations A and B, each with an open invoice and a Stripe customer."""
    rate_card("startup", 3000)
    a, owner_a = startup()
    b, owner_b = startup()
    for org, cus in ((a, "cus_A"), (b, "cus_B")):
        BillingAccount.objects.create(organisation=org, stripe_customer_id=cus)
    return {"a": a, "owner_a": owner_a, "b": b, "owner_b": owner_b, "inv_a": issue(a), "inv_b": issue(b)}


def billing_member(org):
    return org.memberships.get(role=Membership.Role.BILLING).user


def test_a_billing_member_removed_from_the_organisation_can_no_longer_see_download_or_pay(client, two, recorder):
    member = billing_member(two["a"])
    client.force_login(member)
    assert client.get("/billing/invoices/").status_code == 200
    Membership.objects.filter(user=member, organisation=two["a"]).delete()
    inv = two["inv_a"]
    assert client.get("/billing/invoices/").status_code == 404
    assert client.get(f"/billing/invoices/{inv.pk}/pdf/").status_code == 404
    assert client.post(f"/billing/invoices/{inv.pk}/pay/").status_code == 404
    assert client.post("/billing/card/", {"organisation": two["a"].pk}).status_code == 404
    bought = client.post(
        f"/billing/hour-packs/?organisation={two['a'].pk}", {"gpu_model": "H100-80GB", "gpu_hours": "10"}
    )
    assert bought.status_code == 404
    assert recorder.requests == [] and not HourPack.objects.exists()


def test_an_owner_of_one_organisation_cannot_pay_or_buy_for_another(client, two, recorder):
    client.force_login(two["owner_a"])
    b = two["b"]
    assert client.post(f"/billing/invoices/{two['inv_b'].pk}/pay/").status_code == 404
    assert client.get(f"/billing/invoices/{two['inv_b'].pk}/pdf/").status_code == 404
    pack = {"gpu_model": "H100-80GB", "gpu_hours": "10"}
    assert client.post(f"/billing/hour-packs/?organisation={b.pk}", pack).status_code == 404
    assert client.post("/billing/hour-packs/", {**pack, "organisation": b.pk}).status_code == 404
    assert client.post("/billing/card/", {"organisation": b.pk}).status_code == 404
    assert recorder.requests == [] and not HourPack.objects.exists()


def checkout_paid(invoice: Invoice, **changes) -> dict:
    obj = {
        "id": "cs_test_x",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "customer": invoice.organisation.billing.stripe_customer_id,
        "amount_total": invoice.total_krw,
        "currency": "krw",
        "metadata": {"kind": "invoice", "invoice_id": str(invoice.pk), "organisation_id": str(invoice.organisation_id)},
    }
    return {**obj, **changes}


def deliver(client, evt: dict) -> str:
    body, sig = signed(evt)
    assert client.post(URL, body, content_type="application/json", headers={"Stripe-Signature": sig}).status_code == 200
    from billing.models import StripeEvent

    return stripe_event_process(event_pk=StripeEvent.objects.get(event_id=evt["id"]).pk)


@pytest.mark.parametrize(
    "tampering",
    ["a smaller amount", "another currency", "A's customer paying B's invoice", "A's organisation in the metadata"],
)
def test_a_signed_checkout_naming_another_organisations_invoice_changes_nothing(client, two, tampering):
    """A pays a session whose metadata names B's invoice (or pays less): B's invoice stays open."""
    inv_b = two["inv_b"]
    meta = {"kind": "invoice", "invoice_id": str(inv_b.pk), "organisation_id": str(inv_b.organisation_id)}
    changes = {
        "a smaller amount": {"amount_total": 100},
        "another currency": {"currency": "usd"},
        "A's customer paying B's invoice": {"customer": "cus_A"},
        "A's organisation in the metadata": {"metadata": {**meta, "organisation_id": str(two["a"].pk)}},
    }[tampering]
    outcome = deliver(client, event("evt_tampered", "checkout.session.completed", checkout_paid(inv_b, **changes)))
    assert outcome == "invoice mismatch"
    inv_b.refresh_from_db()
    assert inv_b.status == Invoice.Status.OPEN and not inv_b.events.filter(new_status="paid").exists()


def test_a_payment_intent_of_another_customer_does_not_pay_the_invoice(client, two):
    inv_b = two["inv_b"]
    intent = {
        "id": "pi_x", "object": "payment_intent", "amount": inv_b.total_krw, "currency": "krw", "customer": "cus_A",
        "metadata": {"kind": "invoice", "invoice_id": str(inv_b.pk)},
    }  # fmt: skip
    assert deliver(client, event("evt_pi", "payment_intent.succeeded", intent)) == "invoice mismatch"
    inv_b.refresh_from_db()
    assert inv_b.status == Invoice.Status.OPEN


def test_a_payment_for_a_void_invoice_leaves_it_void_and_asks_for_a_refund(client, two):
    inv = two["inv_a"]
    finance = staff_user("finance@centre.kr", "billing.void_invoice")
    invoice_void(invoice_id=inv.pk, actor=finance, reason="issued in error")
    assert deliver(client, event("evt_late", "checkout.session.completed", checkout_paid(inv))) == (
        "invoice void: payment to refund"
    )
    inv.refresh_from_db()
    assert inv.status == Invoice.Status.VOID and inv.paid_at is None
    assert inv.events.filter(reason__startswith="payment received after void").count() == 1


def test_the_same_payment_notified_twice_and_replayed_is_recorded_once(client, two, jobs):
    inv = two["inv_a"]
    with jobs.committed():
        assert deliver(client, event("evt_1", "checkout.session.completed", checkout_paid(inv))) == "invoice paid"
        # The same payment again under another event id (Stripe retries), then the first replayed.
        assert deliver(client, event("evt_2", "checkout.session.completed", checkout_paid(inv))) == "invoice paid"
        body, sig = signed(event("evt_1", "checkout.session.completed", checkout_paid(inv)))
        client.post(URL, body, content_type="application/json", headers={"Stripe-Signature": sig})
    jobs.run()
    inv.refresh_from_db()
    assert inv.status == Invoice.Status.PAID and inv.events.filter(new_status="paid").count() == 1
    paid_mails = [m for m in mail.outbox if inv.number in m.subject and m.to == [billing_member(two["a"]).email]]
    assert len(paid_mails) == 1, [m.subject for m in paid_mails]


@pytest.mark.django_db(transaction=True)
def test_two_run_invoicing_commands_at_once_issue_one_invoice_and_one_document_per_organisation():
    rate_card("startup", 3000)
    orgs = [startup()[0] for _ in range(5)]
    for org in orgs:
        grant_for(org, intervals=[(at(2, 9, month=10), at(2, 19, month=10))])
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'].replace('/', '%2F')}:{db['PORT']}/{db['NAME']}",
    }
    command = [sys.executable, "manage.py", "run_invoicing", "--month", "2026-10"]
    runs = [
        subprocess.Popen(command, env=env, cwd=django_settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], results
    outputs = [out.decode() for out, _err in results]
    issued = [line for o in outputs for line in o.splitlines() if " issued (" in line and "already" not in line]
    assert len(issued) == 5 and all("failed 0" in o for o in outputs)
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 6)]
    assert InvoiceDocument.objects.count() == 5
