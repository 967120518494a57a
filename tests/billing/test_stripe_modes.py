"""Stripe outside requests where possible, with short timeouts where not, and test/live mode kept
apart: webhook events of the other mode are refused; production refuses a test key."""

from __future__ import annotations

import socket
import threading
import time
from datetime import date

import pytest

from billing.models import BillingAccount, HourPack, Invoice, StripeEvent
from billing.services.invoices import CHARGE_JOB, invoice_issue
from portal.models import Membership, OutboxMessage
from tests.billing.conftest import event, signed
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.portal.test_settings import PRODUCTION_ENV, manage

URL = "/billing/stripe/webhook/"


def intent_event(event_id: str, *, livemode: bool) -> dict:
    obj = {"id": "pi_x", "object": "payment_intent", "amount": 1, "metadata": {}}
    return {**event(event_id, "payment_intent.succeeded", obj), "livemode": livemode}


@pytest.mark.parametrize(("key", "livemode"), [("sk_test_portal", True), ("sk_live_portal", False), ("", False)])
def test_a_webhook_event_of_the_other_mode_is_refused_and_not_stored(client, db, stripe_settings, key, livemode):
    stripe_settings.STRIPE_SECRET_KEY = key
    body, sig = signed(intent_event("evt_mode", livemode=livemode))
    response = client.post(URL, body, content_type="application/json", headers={"Stripe-Signature": sig})
    assert response.status_code == 400
    assert not StripeEvent.objects.exists() and not OutboxMessage.objects.exists()


def test_a_webhook_event_of_the_keys_mode_is_accepted(client, db, stripe_settings):
    stripe_settings.STRIPE_SECRET_KEY = "sk_live_portal"
    body, sig = signed(intent_event("evt_live", livemode=True))
    assert client.post(URL, body, content_type="application/json", headers={"Stripe-Signature": sig}).status_code == 200
    assert StripeEvent.objects.filter(event_id="evt_live").exists()


@pytest.mark.parametrize(
    ("key", "allow", "starts"),
    [("sk_test_abc", "", False), ("rk_test_abc", "", False), ("sk_test_abc", "1", True), ("sk_live_abc", "", True)],
)
def test_production_refuses_a_test_mode_key_unless_allowed(key, allow, starts):
    result = manage("check", env={**PRODUCTION_ENV, "STRIPE_SECRET_KEY": key, "STRIPE_ALLOW_TEST_KEY": allow})
    assert (result.returncode == 0) is starts, result.stderr[-2000:]
    if not starts:
        assert "test-mode key in production" in result.stderr


def _payer(invoice: Invoice):
    return invoice.organisation.memberships.get(role=Membership.Role.BILLING).user


@pytest.fixture
def invoice(db, stripe_settings):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    issued, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    return issued


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stripe_unreachable_shows_a_clear_error_page_and_changes_nothing(client, invoice, stripe_settings):
    stripe_settings.STRIPE_API_BASE = f"http://127.0.0.1:{_closed_port()}"
    client.force_login(_payer(invoice))
    response = client.post(f"/billing/invoices/{invoice.pk}/pay/", HTTP_ACCEPT_LANGUAGE="ko")
    assert response.status_code == 503
    assert "결제 서비스" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    form = client.post(
        f"/billing/hour-packs/?organisation={invoice.organisation_id}",
        {"gpu_model": "H100-80GB", "gpu_hours": "37"},
        HTTP_ACCEPT_LANGUAGE="ko",
    )
    assert form.status_code == 503 and 'value="37"' in form.content.decode()  # the form keeps what was typed
    assert not HourPack.objects.filter(status=HourPack.Status.PENDING).exists()


def test_a_stripe_that_never_answers_is_given_up_after_the_checkout_timeout(client, invoice, stripe_settings):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    stripe_settings.STRIPE_API_BASE = f"http://127.0.0.1:{listener.getsockname()[1]}"
    stripe_settings.STRIPE_CHECKOUT_TIMEOUT_SECONDS = 1
    BillingAccount.objects.create(organisation=invoice.organisation, stripe_customer_id="cus_slow")
    client.force_login(_payer(invoice))
    started = time.monotonic()
    try:
        response = client.post(f"/billing/invoices/{invoice.pk}/pay/")
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
    assert response.status_code == 503
    assert time.monotonic() - started < 8  # two tries of 1 s and the SDK's back-off, not 15 s x 3


def test_a_new_invoice_is_charged_by_a_job_through_the_outbox_not_while_issuing(db, recorder):
    rate_card("startup", 3000)
    org, _ = startup()
    BillingAccount.objects.create(organisation=org, stripe_customer_id="cus_card", default_payment_method="pm_card")
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    assert recorder.requests == []  # nothing sent to Stripe while issuing
    assert list(OutboxMessage.objects.filter(func=CHARGE_JOB).values_list("args", flat=True)) == [[invoice.pk]]
