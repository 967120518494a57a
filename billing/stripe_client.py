"""The only module that imports `stripe`. Takes and returns plain values; every call has a
timeout; every failure is a `PaymentError` whose `permanent` flag says whether a retry can help
(a declined card cannot; a network error can). Money is whole KRW (a zero-decimal currency).

Calls made while a user waits (creating a customer and a Checkout session) use the short
STRIPE_CHECKOUT_TIMEOUT_SECONDS and one retry; calls made by jobs (off-session charges, reading a
setup intent) use TIMEOUT_SECONDS and more retries. Webhook events whose `livemode` differs from
the configured key's mode are refused."""

from __future__ import annotations

from dataclasses import dataclass

import stripe
from django.conf import settings

TIMEOUT_SECONDS = 15
# PAYCO and Samsung Pay take at most this much and cannot save a card (no setup mode).
SMALL_WALLET_MAX_KRW = 2_000_000
# Stripe takes at most eight digits in a currency's smallest unit: ₩99,999,999 per payment.
MAX_CHARGE_KRW = 99_999_999
# Stripe's refusals of a payment because of its amount (InvalidRequestError codes): never a decline.
AMOUNT_REFUSALS = frozenset({"amount_too_small", "amount_too_large"})


def card_can_collect(amount_krw: int) -> bool:
    """True when Stripe takes `amount_krw` in one card payment: at least STRIPE_MIN_CHARGE_KRW
    (Stripe's minimum charge, a setting) and at most MAX_CHARGE_KRW. Nothing outside is sent."""
    return settings.STRIPE_MIN_CHARGE_KRW <= amount_krw <= MAX_CHARGE_KRW


class PaymentError(Exception):
    """`permanent`: a retry cannot help (a declined card, a refused request). `unreachable`: no
    answer from Stripe at all (connection refused or reset, a timeout), as opposed to an answer
    refusing the request. `request_id`: Stripe's id of the request it answered, for staff."""

    def __init__(
        self, message: str, *, permanent: bool, code: str = "", unreachable: bool = False, request_id: str = ""
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.unreachable = unreachable
        self.request_id = request_id

    @property
    def refused_for_amount(self) -> bool:
        """Stripe refused the amount itself (below its minimum, above its maximum): the payer did
        nothing wrong, so this is not a decline."""
        return self.code in AMOUNT_REFUSALS


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True)
class Charge:
    id: str
    status: str


def payment_method_types(*, mode: str, amount_krw: int | None = None) -> list[str]:
    """What Checkout offers in KRW: international and Korean cards, Kakao Pay and Naver Pay always;
    PAYCO and Samsung Pay only for a payment of at most 2,000,000 KRW (never to save a card)."""
    types = ["card", "kr_card", "kakao_pay", "naver_pay"]
    if mode == "payment" and amount_krw is not None and amount_krw <= SMALL_WALLET_MAX_KRW:
        types += ["payco", "samsung_pay"]
    return types


def is_configured() -> bool:
    """A secret key is set (the real Stripe or an emulator at STRIPE_API_BASE). Without one,
    nothing calls Stripe: the payment pages say payments are not configured (a development install)."""
    return bool(settings.STRIPE_SECRET_KEY)


def _client(*, interactive: bool = False) -> stripe.StripeClient:
    """A client for a job (15 s, two retries) or, `interactive`, for a request where the user
    waits (STRIPE_CHECKOUT_TIMEOUT_SECONDS, one retry; the idempotency key makes it safe)."""
    base = settings.STRIPE_API_BASE
    timeout = settings.STRIPE_CHECKOUT_TIMEOUT_SECONDS if interactive else TIMEOUT_SECONDS
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": base} if base else None,
        http_client=stripe.RequestsClient(timeout=timeout),
        max_network_retries=1 if interactive else 2,
    )


def key_is_live() -> bool | None:
    """The configured key's mode: True for sk_live_/rk_live_, False for sk_test_/rk_test_, None
    when no key (or an unknown kind) is configured."""
    key = settings.STRIPE_SECRET_KEY or ""
    if key.startswith(("sk_live_", "rk_live_")):
        return True
    if key.startswith(("sk_test_", "rk_test_")):
        return False
    return None


def _error(exc: stripe.StripeError) -> PaymentError:
    permanent = isinstance(exc, stripe.CardError | stripe.InvalidRequestError | stripe.AuthenticationError)
    code = getattr(exc, "code", "") or ""
    return PaymentError(
        str(exc.user_message or exc),
        permanent=permanent,
        code=code,
        unreachable=isinstance(exc, stripe.APIConnectionError),  # timeouts included
        request_id=exc.request_id or "",
    )


def customer_create(*, organisation_id: int, name: str, email: str) -> str:
    try:
        customer = _client(interactive=True).v1.customers.create(
            params={"name": name, "email": email, "metadata": {"organisation_id": str(organisation_id)}},
            options={"idempotency_key": f"organisation-{organisation_id}-customer"},
        )
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return customer.id


def payment_method_attach(*, customer: str, payment_method: str) -> str:
    """Attach a payment method and make it the customer's default for invoices."""
    try:
        client = _client()
        pm = client.v1.payment_methods.attach(payment_method, params={"customer": customer})
        client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": pm.id}})
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return pm.id


def setup_intent_payment_method(setup_intent: str) -> str:
    try:
        return _client().v1.setup_intents.retrieve(setup_intent).payment_method or ""
    except stripe.StripeError as exc:
        raise _error(exc) from exc


def checkout_setup(*, customer: str, success_url: str, cancel_url: str, metadata: dict) -> CheckoutSession:
    """A Checkout page that saves a card (setup mode) for later off-session charges."""
    params = {
        "mode": "setup",
        "customer": customer,
        "currency": "krw",
        "payment_method_types": payment_method_types(mode="setup"),
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": metadata,
    }
    try:
        session = _client(interactive=True).v1.checkout.sessions.create(params=params)
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return CheckoutSession(session.id, session.url)


def checkout_payment(
    *,
    customer: str,
    amount_krw: int,
    product: str,
    success_url: str,
    cancel_url: str,
    metadata: dict,
    idempotency_key: str,
) -> CheckoutSession:
    """A Checkout page that collects one amount (an hour pack, an invoice) in KRW."""
    params = {
        "mode": "payment",
        "customer": customer,
        "payment_method_types": payment_method_types(mode="payment", amount_krw=amount_krw),
        "line_items": [
            {
                "quantity": 1,
                "price_data": {"currency": "krw", "unit_amount": amount_krw, "product_data": {"name": product}},
            }
        ],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
    }
    try:
        session = _client(interactive=True).v1.checkout.sessions.create(
            params=params, options={"idempotency_key": idempotency_key}
        )
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return CheckoutSession(session.id, session.url)


def charge_off_session(
    *, customer: str, payment_method: str, amount_krw: int, description: str, metadata: dict, idempotency_key: str
) -> Charge:
    """Charge a saved card without the customer present. A decline raises a permanent PaymentError."""
    params = {
        "amount": amount_krw,
        "currency": "krw",
        "customer": customer,
        "payment_method": payment_method,
        "off_session": True,
        "confirm": True,
        "metadata": {**metadata, "description": description},
    }
    try:
        intent = _client().v1.payment_intents.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return Charge(intent.id, intent.status)


def event_verify(payload: bytes, signature: str) -> dict:
    """The event as a plain dict, once its signature (and a timestamp no older than the
    tolerance) is verified with the webhook secret; PaymentError(permanent) otherwise."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise PaymentError("no webhook secret configured", permanent=True, code="no_secret")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
        )
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise PaymentError(str(exc), permanent=True, code="bad_signature") from exc
    data = event.to_dict()
    live = key_is_live()
    if live is None or data.get("livemode") is not live:
        raise PaymentError(
            f"event {data.get('id')} livemode={data.get('livemode')} but the key is "
            f"{'unknown' if live is None else 'live' if live else 'test'}",
            permanent=True,
            code="livemode",
        )
    return data
