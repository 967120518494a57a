"""Payments through the Stripe adapter: the organisation's customer, saving a card (Checkout in
setup mode), hour packs and invoice links (Checkout in payment mode), off-session charges of
finalised invoices, and the webhook events that confirm them.

A webhook event is stored once by its id (a replay finds the row) and processed by a job.
Processing only moves things forward (pending pack → paid, open invoice → paid), so events
arriving out of order or twice change nothing that is already settled."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing import ledger, stripe_client
from billing.models import BillingAccount, HourPack, Invoice, Rate, StripeEvent
from billing.services.consequences import grants_resume_after_funding
from billing.services.invoices import (
    invoice_card_amount_refused,
    invoice_carry_below_minimum,
    invoice_mark_paid,
    invoice_payment_failed,
)
from portal.errors import PortalError
from portal.models import Membership, Organisation
from portal.outbox import outbox_enqueue

log = logging.getLogger(__name__)
EVENT_JOB = "billing.jobs.stripe_event_job"
MAX_PACK_HOURS = 100_000


def can_pay(user, organisation: Organisation) -> bool:
    """Owners and billing members pay and buy, as they are NOW."""
    return Membership.objects.filter(
        organisation=organisation, user=user, role__in=[Membership.Role.OWNER, Membership.Role.BILLING]
    ).exists()


def _require_payer(user, organisation: Organisation) -> None:
    if not can_pay(user, organisation):
        raise PortalError(_("Only owners and billing members can pay for the organisation."), code="forbidden")


def _checkout_error(exc: stripe_client.PaymentError, *, what: str, organisation_id: int) -> PortalError:
    """What the user waiting for a Checkout page is told. No answer from Stripe (connection
    refused, a timeout): not reachable, try again later (code "stripe", the 503 page). An answer
    refusing the request (an invalid request, an amount out of range, a key Stripe rejects): the
    payment could not be started, with what to do (code "stripe_refused"); the refusal is logged
    with Stripe's request id, which the message also gives as the reference for finance."""
    if exc.unreachable:
        return PortalError(_("The payment service is not reachable; try again later."), code="stripe")
    log.error(
        "Stripe refused creating %s for organisation %s (Stripe request %s, code %s): %s",
        what, organisation_id, exc.request_id or "unknown", exc.code or "none", exc,
    )  # fmt: skip
    if exc.request_id:
        message = _(
            "The payment could not be started: the payment service refused the request. Nothing was charged. "
            "Try again later; if it happens again, contact the centre's finance team with the reference %(ref)s."
        ) % {"ref": exc.request_id}
    else:
        message = _(
            "The payment could not be started: the payment service refused the request. Nothing was charged. "
            "Try again later; if it happens again, contact the centre's finance team."
        )
    return PortalError(message, code="stripe_refused")


def billing_account_get_or_create(*, organisation: Organisation, email: str) -> BillingAccount:
    """The organisation's Stripe customer, created once (an idempotency key per organisation
    makes a retried creation return the same customer)."""
    account = BillingAccount.objects.filter(organisation=organisation).first()
    if account is not None:
        return account
    try:
        customer = stripe_client.customer_create(
            organisation_id=organisation.pk, name=organisation.name_ko, email=email
        )
    except stripe_client.PaymentError as exc:
        raise _checkout_error(exc, what="the customer", organisation_id=organisation.pk) from exc
    try:
        with transaction.atomic():
            return BillingAccount.objects.create(organisation=organisation, stripe_customer_id=customer)
    except IntegrityError:
        return BillingAccount.objects.get(organisation=organisation)


def card_checkout_start(*, organisation: Organisation, user, success_url: str, cancel_url: str) -> str:
    """The Checkout page (setup mode) where an owner or billing member saves a card."""
    _require_payer(user, organisation)
    account = billing_account_get_or_create(organisation=organisation, email=user.email)
    try:
        session = stripe_client.checkout_setup(
            customer=account.stripe_customer_id,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata={"kind": "card", "organisation_id": str(organisation.pk)},
        )
    except stripe_client.PaymentError as exc:
        raise _checkout_error(exc, what="a card-saving Checkout", organisation_id=organisation.pk) from exc
    return session.url


def hour_pack_price(organisation: Organisation, gpu_model: str) -> int:
    rate = Rate.objects.in_effect().filter(gpu_model=gpu_model, price_tier=organisation.price_tier).first()
    if rate is None:
        raise PortalError(_("No rate is published for this GPU model."), code="no_rate")
    return rate.krw_per_gpu_hour


def hour_pack_checkout_start(
    *, organisation: Organisation, user, gpu_model: str, gpu_hours: int, success_url: str, cancel_url: str
) -> tuple[HourPack, str]:
    """A pending hour pack at today's published rate (plus VAT) and its Checkout page. The pack
    counts only once the webhook confirms the payment."""
    _require_payer(user, organisation)
    if not 1 <= gpu_hours <= MAX_PACK_HOURS:
        raise PortalError(_("Choose between 1 and 100,000 GPU-hours."), code="hours")
    krw = hour_pack_price(organisation, gpu_model)
    supply = gpu_hours * krw
    vat = ledger.vat_of(supply, settings.VAT_PERCENT)
    if supply + vat < settings.STRIPE_MIN_CHARGE_KRW:
        # Below Stripe's minimum charge: never sent to it.
        raise PortalError(
            _("A pack must cost at least ₩%(min)s including VAT (the smallest card payment): choose more GPU-hours.")
            % {"min": f"{settings.STRIPE_MIN_CHARGE_KRW:,}"},
            code="too_cheap",
        )
    if supply + vat > stripe_client.MAX_CHARGE_KRW:
        # Stripe would refuse it; say so on the form rather than "the service is not reachable".
        raise PortalError(
            _("A pack can cost at most ₩%(max)s including VAT (the payment service's limit): choose fewer GPU-hours.")
            % {"max": f"{stripe_client.MAX_CHARGE_KRW:,}"},
            code="too_dear",
        )
    account = billing_account_get_or_create(organisation=organisation, email=user.email)
    pack = HourPack.objects.create(
        organisation=organisation,
        gpu_model=gpu_model,
        gpu_hours=gpu_hours,
        krw_per_gpu_hour=krw,
        supply_krw=supply,
        vat_krw=vat,
        total_krw=supply + vat,
        bought_by=user,
    )
    try:
        session = stripe_client.checkout_payment(
            customer=account.stripe_customer_id,
            amount_krw=pack.total_krw,
            product=f"{gpu_hours} GPU-hours {gpu_model}",
            success_url=success_url,
            cancel_url=cancel_url,
            metadata={"kind": "hour_pack", "hour_pack_id": str(pack.pk), "organisation_id": str(organisation.pk)},
            idempotency_key=f"hour-pack-{pack.pk}",
        )
    except stripe_client.PaymentError as exc:
        HourPack.objects.filter(pk=pack.pk, status=HourPack.Status.PENDING).update(status=HourPack.Status.CANCELLED)
        raise _checkout_error(
            exc, what=f"the Checkout of hour pack {pack.pk}", organisation_id=organisation.pk
        ) from exc
    HourPack.objects.filter(pk=pack.pk).update(checkout_session_id=session.id)
    pack.checkout_session_id = session.id
    return pack, session.url


_CARRIED_MESSAGE = gettext_lazy(
    "The payment service cannot take an amount this small by card: nothing was charged. "
    "The invoice is carried forward and added to your next invoice."
)


def invoice_checkout_start(*, invoice: Invoice, user, success_url: str, cancel_url: str) -> str:
    """A Checkout page paying one open invoice."""
    _require_payer(user, invoice.organisation)
    if invoice.status != Invoice.Status.OPEN:
        raise PortalError(_("This invoice is not open."), code="not_open")
    if invoice_carry_below_minimum(invoice_id=invoice.pk):  # the minimum was raised since it was issued
        raise PortalError(str(_CARRIED_MESSAGE), code="carried")
    if not invoice.card_payable:
        raise PortalError(_("This invoice is paid by bank transfer, not by card."), code="transfer")
    account = billing_account_get_or_create(organisation=invoice.organisation, email=user.email)
    try:
        session = stripe_client.checkout_payment(
            customer=account.stripe_customer_id,
            amount_krw=invoice.amount_due_krw,
            product=invoice.number,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata={
                "kind": "invoice",
                "invoice_id": str(invoice.pk),
                "organisation_id": str(invoice.organisation_id),
            },
            idempotency_key=f"invoice-{invoice.pk}-checkout-{invoice.payment_attempts}",
        )
    except stripe_client.PaymentError as exc:
        if exc.refused_for_amount:
            invoice_card_amount_refused(invoice_id=invoice.pk, code=exc.code, error=str(exc))
            if exc.code == "amount_too_small":
                raise PortalError(str(_CARRIED_MESSAGE), code="carried") from exc
            raise PortalError(_("This invoice is paid by bank transfer, not by card."), code="transfer") from exc
        raise _checkout_error(
            exc, what=f"the Checkout of invoice {invoice.pk}", organisation_id=invoice.organisation_id
        ) from exc
    return session.url


def invoice_charge(*, invoice_id: int) -> str:
    """Charge an open invoice's amount due to the saved card, off-session. The idempotency key is
    per invoice and attempt: a job run twice for one attempt cannot charge twice; a decline counts
    an attempt (and the next try, after PAYMENT_RETRY_HOURS, is a new one). An amount outside
    Stripe's limits is never sent; Stripe refusing the amount is not a decline."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("organisation").get(pk=invoice_id)
        if invoice.status != Invoice.Status.OPEN:
            return "not open"
        if invoice_carry_below_minimum(invoice_id=invoice.pk):  # the minimum was raised since it was issued
            return "carried forward"
        if not invoice.card_payable:
            return "by bank transfer"
        account = BillingAccount.objects.filter(organisation_id=invoice.organisation_id).first()
        if account is None or not account.has_card:
            return "no card"
        attempt = invoice.payment_attempts + 1
    try:
        charge = stripe_client.charge_off_session(
            customer=account.stripe_customer_id,
            payment_method=account.default_payment_method,
            amount_krw=invoice.amount_due_krw,
            description=invoice.number,
            metadata={"kind": "invoice", "invoice_id": str(invoice.pk)},
            idempotency_key=f"invoice-{invoice.pk}-attempt-{attempt}",
        )
    except stripe_client.PaymentError as exc:
        if exc.refused_for_amount:
            invoice_card_amount_refused(invoice_id=invoice.pk, code=exc.code, error=str(exc))
            return "amount refused"
        if not exc.permanent:
            raise  # the job fails and RQ's retry / the schedule tries the same attempt again
        Invoice.objects.filter(pk=invoice.pk).update(payment_attempts=attempt, last_attempt_at=timezone.now())
        invoice_payment_failed(invoice_id=invoice.pk, error=str(exc))
        return "declined"
    Invoice.objects.filter(pk=invoice.pk).update(payment_attempts=attempt, last_attempt_at=timezone.now())
    if charge.status == "succeeded":
        invoice_mark_paid(invoice_id=invoice.pk, reason="charged off-session", payment_ref=charge.id)
        return "paid"
    return charge.status


def invoices_charge_due(*, now: datetime | None = None) -> list[int]:
    """Open invoices with a saved card whose last attempt is PAYMENT_RETRY_HOURS old (the retry
    schedule), up to PAYMENT_MAX_ATTEMPTS attempts."""
    now = now or timezone.now()
    due = Invoice.objects.filter(
        status=Invoice.Status.OPEN,
        transfer_only=False,
        payment_attempts__gte=1,
        payment_attempts__lt=settings.PAYMENT_MAX_ATTEMPTS,
        last_attempt_at__lte=now - timedelta(hours=settings.PAYMENT_RETRY_HOURS),
    )
    ids = list(due.values_list("pk", flat=True))
    for pk in ids:
        try:
            invoice_charge(invoice_id=pk)
        except Exception:
            log.exception("retrying the charge of invoice %s failed", pk)
    return ids


# -- webhooks ------------------------------------------------------------------------------------


@transaction.atomic
def stripe_event_receive(*, payload: bytes, signature: str) -> StripeEvent | None:
    """Verify and store the event once; its processing goes to a job through the outbox.
    Returns None for a replay (the id is already stored). Raises PaymentError when forged."""
    event = stripe_client.event_verify(payload, signature)
    stored, created = StripeEvent.objects.get_or_create(
        event_id=event["id"],
        defaults={
            "type": event["type"],
            "created": datetime.fromtimestamp(int(event["created"]), tz=UTC),
            "payload": event,
        },
    )
    if not created:
        return None
    outbox_enqueue(EVENT_JOB, stored.pk)
    return stored


def _checkout_completed(obj: dict) -> str:
    metadata = obj.get("metadata") or {}
    kind = metadata.get("kind")
    if kind == "hour_pack":
        return _hour_pack_paid(obj, int(metadata["hour_pack_id"]))
    if kind == "invoice" and obj.get("payment_status") == "paid":
        invoice = Invoice.objects.filter(pk=int(metadata["invoice_id"])).first()
        if invoice is None or not _pays(invoice, obj, amount=obj.get("amount_total"), required_customer=True):
            return "invoice mismatch"
        invoice = invoice_mark_paid(
            invoice_id=invoice.pk,
            reason=f"paid through Checkout ({obj.get('id')})",
            payment_ref=obj.get("payment_intent") or "",
        )
        return _paid_outcome(invoice)
    if kind == "card" and obj.get("setup_intent"):
        account = BillingAccount.objects.filter(stripe_customer_id=obj.get("customer")).first()
        if account is None:
            return "unknown customer"
        pm = stripe_client.setup_intent_payment_method(obj["setup_intent"])
        if pm:
            stripe_client.payment_method_attach(customer=account.stripe_customer_id, payment_method=pm)
            BillingAccount.objects.filter(pk=account.pk).update(default_payment_method=pm)
            grants_resume_after_funding(organisation_id=account.organisation_id)
        return "card saved"
    return "ignored"


@transaction.atomic
def _hour_pack_paid(obj: dict, pack_id: int) -> str:
    """Credit the pack once, and only for the session, amount and currency it was sold with."""
    pack = HourPack.objects.select_for_update().filter(pk=pack_id).first()
    if pack is None:
        return "unknown pack"
    if pack.status != HourPack.Status.PENDING:
        return f"pack already {pack.status}"
    if obj.get("payment_status") != "paid":
        return "pack not paid yet"
    if (obj.get("id"), obj.get("amount_total"), (obj.get("currency") or "").lower()) != (
        pack.checkout_session_id,
        pack.total_krw,
        "krw",
    ):
        return "pack mismatch"
    pack.status = HourPack.Status.PAID
    pack.paid_at = timezone.now()
    pack.save(update_fields=["status", "paid_at"])
    grants_resume_after_funding(organisation_id=pack.organisation_id)
    return "pack credited"


def _pays(invoice: Invoice, obj: dict, *, amount, required_customer: bool) -> bool:
    """A payment settles an invoice only for its exact amount due in KRW, by the invoice
    organisation's own Stripe customer, and (when the metadata names one) for its organisation:
    a signed event for someone else's invoice, or for less, changes nothing."""
    account = BillingAccount.objects.filter(organisation_id=invoice.organisation_id).first()
    customer = obj.get("customer")
    if customer is None and not required_customer:
        customer_ok = True  # a payment intent without a customer: amount and metadata decide
    else:
        customer_ok = account is not None and customer == account.stripe_customer_id
    named = (obj.get("metadata") or {}).get("organisation_id")
    return (
        amount == invoice.amount_due_krw
        and (obj.get("currency") or "krw").lower() == "krw"
        and customer_ok
        and (named is None or named == str(invoice.organisation_id))
    )


def _paid_outcome(invoice: Invoice) -> str:
    if not invoice.payment_to_refund:
        return "invoice paid"
    return (
        "invoice void: payment to refund"
        if invoice.status == Invoice.Status.VOID
        else "invoice already paid: payment to refund"
    )


def _intent_outcome(obj: dict, event_type: str) -> str:
    metadata = obj.get("metadata") or {}
    if metadata.get("kind") != "invoice" or "invoice_id" not in metadata:
        return "ignored"
    invoice = Invoice.objects.filter(pk=int(metadata["invoice_id"])).first()
    if invoice is None or not _pays(invoice, obj, amount=obj.get("amount"), required_customer=False):
        return "invoice mismatch"
    if event_type == "payment_intent.succeeded":
        invoice = invoice_mark_paid(invoice_id=invoice.pk, reason="payment succeeded", payment_ref=obj.get("id") or "")
        return _paid_outcome(invoice)
    failure = obj.get("last_payment_error") or {}
    error = failure.get("message") or "payment failed"
    if failure.get("code") in stripe_client.AMOUNT_REFUSALS:
        invoice_card_amount_refused(invoice_id=invoice.pk, code=failure["code"], error=error)
        return "amount refused"
    invoice_payment_failed(invoice_id=invoice.pk, error=error)
    return "payment failed"


def stripe_event_process(*, event_pk: int) -> str:
    """Act on a stored event once (processed_at is set under the row lock)."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event_pk)
        if event.processed_at is not None:
            return event.outcome
        obj = event.payload["data"]["object"]
        if event.type == "checkout.session.completed":
            outcome = _checkout_completed(obj)
        elif event.type in {"payment_intent.succeeded", "payment_intent.payment_failed"}:
            outcome = _intent_outcome(obj, event.type)
        elif event.type == "checkout.session.expired" and (obj.get("metadata") or {}).get("kind") == "hour_pack":
            cancelled = HourPack.objects.filter(
                pk=int(obj["metadata"]["hour_pack_id"]), status=HourPack.Status.PENDING, checkout_session_id=obj["id"]
            ).update(status=HourPack.Status.CANCELLED)
            outcome = "pack cancelled" if cancelled else "pack already settled"
        else:
            outcome = "ignored"
        event.processed_at = timezone.now()
        event.outcome = outcome
        event.save(update_fields=["processed_at", "outcome"])
    return outcome
