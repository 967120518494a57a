"""Money collected through Stripe: the organisation's customer, hour packs, webhook events."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from allocations.models.nodes import GpuModelField
from portal.stored_text import grouped


class BillingAccount(models.Model):
    """The organisation's Stripe customer and whether a card is saved for off-session charges."""

    organisation = models.OneToOneField(
        "portal.Organisation", on_delete=models.CASCADE, related_name="billing", verbose_name=_("organisation")
    )
    stripe_customer_id = models.CharField(_("Stripe customer"), max_length=64, unique=True)
    default_payment_method = models.CharField(_("saved card (Stripe payment method)"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("billing account")
        verbose_name_plural = _("billing accounts")

    def __str__(self) -> str:
        return f"{self.organisation_id}: {self.stripe_customer_id}"

    @property
    def has_card(self) -> bool:
        return bool(self.default_payment_method)


class HourPack(models.Model):
    """Prepaid GPU-hours of one GPU model, bought through Stripe Checkout. Credited (`paid`) only
    by the webhook job, once; drawn by the ledger after a grant's subsidy."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Awaiting payment")
        PAID = "paid", _("Paid")
        CANCELLED = "cancelled", _("Cancelled")

    organisation = models.ForeignKey(
        "portal.Organisation", on_delete=models.PROTECT, related_name="hour_packs", verbose_name=_("organisation")
    )
    gpu_model = GpuModelField(db_column="gpu_model")
    gpu_hours = models.PositiveIntegerField(_("GPU-hours"), validators=[MinValueValidator(1)])
    krw_per_gpu_hour = models.PositiveIntegerField(_("KRW per GPU-hour"))
    supply_krw = models.BigIntegerField(_("supply value (KRW)"))
    vat_krw = models.BigIntegerField(_("VAT (KRW)"))
    total_krw = models.BigIntegerField(_("total (KRW)"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    checkout_session_id = models.CharField(_("Stripe Checkout session"), max_length=255, blank=True)
    bought_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("bought by")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)

    class Meta:
        verbose_name = _("hour pack")
        verbose_name_plural = _("hour packs")
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(gpu_hours__gt=0), name="hour_pack_hours_positive")]

    def __str__(self) -> str:
        return _("%(hours)s GPU-hours of %(model)s (%(status)s)") % {
            "hours": grouped(self.gpu_hours), "model": self.gpu_model_id, "status": self.get_status_display(),
        }  # fmt: skip


class StripeEvent(models.Model):
    """Every verified webhook event, stored once by its id: a replay finds the row and does nothing."""

    event_id = models.CharField(_("Stripe event"), max_length=255, unique=True)
    type = models.CharField(pgettext_lazy("Stripe event", "type"), max_length=100)
    created = models.DateTimeField(_("created at Stripe"), help_text=_("Stripe's creation time of the event."))
    payload = models.JSONField(_("payload"))
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("Stripe event")
        verbose_name_plural = _("Stripe events")
        ordering = ["-received_at"]
        # /metrics: webhook lag, read without scanning processed events.
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=models.Q(processed_at__isnull=True),
                name="stripe_event_unprocessed_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class SubsidyAlert(models.Model):
    """A threshold of a grant's subsidised hours (80, 100) announced once."""

    grant = models.ForeignKey("allocations.Grant", on_delete=models.CASCADE, related_name="subsidy_alerts")
    percent = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["grant", "percent"], name="subsidy_alert_once")]

    def __str__(self) -> str:
        return _("Grant #%(grant)s: %(percent)s %%") % {"grant": self.grant_id, "percent": self.percent}


class BankTransfer(models.Model):
    """A bank transfer finance received for an invoice (one not collectable by card, or any other),
    recorded once per invoice and bank reference: recording it again finds this row. One transfer
    (the same bank reference, day and amount) pays one invoice only."""

    invoice = models.ForeignKey(
        "billing.Invoice", on_delete=models.PROTECT, related_name="transfers", verbose_name=_("invoice")
    )
    amount_krw = models.BigIntegerField(_("amount (KRW)"), validators=[MinValueValidator(1)])
    received_on = models.DateField(_("received on"))
    reference = models.CharField(_("bank reference"), max_length=100)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("recorded by")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("bank transfer")
        verbose_name_plural = _("bank transfers")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "reference"], name="bank_transfer_once_per_reference"),
            models.UniqueConstraint(
                fields=["reference", "received_on", "amount_krw"], name="bank_transfer_pays_one_invoice"
            ),
            models.CheckConstraint(condition=models.Q(amount_krw__gt=0), name="bank_transfer_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}: ₩{self.amount_krw:,} {self.reference}"
