"""Invoices: one live (not void) invoice per organisation per calendar month (Seoul), numbered
INV-YYYY-NNNNNN without gaps per year at finalisation. A voided month may be re-issued by finance:
a new invoice, new number, that names the void one it replaces (`replaces`). A month whose total
is ₩0 but drew prepaid hours gets a statement: an Invoice row without a number (it records the
draws; it takes no number from the series). The portal is the system of record; Stripe only
collects money.

An amount Stripe cannot collect by card is never sent to it. A month below the minimum card
charge (STRIPE_MIN_CHARGE_KRW) is issued and numbered as usual but *carried forward*: not charged,
not due, never overdue; the organisation's next invoice with an amount collects it (its
`carried_krw`, shown as carried-forward lines) and paying that invoice pays it. An invoice whose
amount due exceeds Stripe's maximum is `transfer_only`: paid by bank transfer, recorded by finance."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import get_language, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from billing.reasons import INVOICE_REASONS
from portal.stored_text import grouped


class InvoiceQuerySet(models.QuerySet):
    def overdue(self, today: date | None = None) -> InvoiceQuerySet:
        """Open invoices whose due date has passed (Seoul calendar)."""
        return self.filter(status=Invoice.Status.OPEN, due_on__lt=today or timezone.localdate())


# `Invoice.amount_due_krw` in SQL: what paying the invoice settles (its own total and the carried
# amounts it collects), for queries that filter or sum by it.
AMOUNT_DUE_KRW = models.F("total_krw") + models.F("carried_krw")


class Invoice(models.Model):
    """Only billing.services.invoices sets `status`, following ALLOWED, with an InvoiceEvent."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")
        CARRIED = "carried", _("Carried forward")
        WRITTEN_OFF = "writeoff", _("Written off")

    ALLOWED = {
        Status.OPEN: {Status.PAID, Status.VOID, Status.CARRIED},
        # Carried forward: paid with the invoice that collects it (or by transfer), voided, or (the
        # organisation's last amount, with no next invoice) written off with a credit note.
        Status.CARRIED: {Status.PAID, Status.VOID, Status.WRITTEN_OFF},
        Status.PAID: set(),
        Status.VOID: set(),
        Status.WRITTEN_OFF: set(),
    }

    organisation = models.ForeignKey(
        "portal.Organisation", on_delete=models.PROTECT, related_name="invoices", verbose_name=_("organisation")
    )
    month = models.DateField(_("month"), help_text=_("The first day of the billed month."))
    # Empty (NULL) only for a ₩0 statement: numbers are for amounts owed.
    number = models.CharField(_("number"), max_length=16, unique=True, null=True, blank=True)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.OPEN)
    issued_on = models.DateField(_("issued on"))
    # Empty (NULL) for an amount carried forward, from then on: it is never due by itself (the
    # invoice that collects it, or finance, settles it), whatever it becomes later.
    due_on = models.DateField(_("due on"), null=True, blank=True)
    supply_krw = models.BigIntegerField(_("supply value (KRW)"))
    vat_krw = models.BigIntegerField(_("VAT (KRW)"))
    total_krw = models.BigIntegerField(_("total (KRW)"))
    vat_percent = models.PositiveSmallIntegerField(_("VAT percent"))
    # What a Korean business needs for its books, frozen at issue time. The English names are
    # printed under the Korean ones on the bilingual PDF; empty on invoices issued before it.
    supplier_name = models.CharField(_("supplier name"), max_length=200)
    supplier_name_en = models.CharField(_("supplier name (English)"), max_length=200, blank=True, default="")
    supplier_brn = models.CharField(_("supplier business registration number"), max_length=10)
    buyer_name = models.CharField(_("buyer name"), max_length=200)
    buyer_name_en = models.CharField(_("buyer name (English)"), max_length=200, blank=True, default="")
    buyer_brn = models.CharField(_("buyer business registration number"), max_length=10, blank=True)
    # Room for an electronic tax invoice adapter (국세청 전자세금계산서): its approval number.
    tax_invoice_ref = models.CharField(_("electronic tax invoice number"), max_length=64, blank=True)
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    # Carried forward: the later invoice that collects this one's amount (empty while it waits).
    carried_into = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="carried_from",
        verbose_name=_("collected with"),
    )  # fmt: skip
    # What earlier carried-forward invoices add to this one's amount due (frozen at issue).
    carried_krw = models.BigIntegerField(_("carried forward (KRW)"), default=0)
    # Above what Stripe takes in one payment: paid by bank transfer, never by card.
    transfer_only = models.BooleanField(_("by bank transfer"), default=False)
    payment_attempts = models.PositiveSmallIntegerField(_("payment attempts"), default=0)
    last_payment_error = models.TextField(_("last payment error"), blank=True)
    last_attempt_at = models.DateTimeField(_("last payment attempt"), null=True, blank=True)
    # A re-issue (billing.services.invoices.invoice_reissue) names the void invoice it corrects;
    # one-to-one: a void invoice is replaced at most once (a void re-issue is itself re-issued).
    replaces = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="replaced_by",
        verbose_name=_("replaces"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        ordering = ["-month", "number"]
        permissions = [
            ("void_invoice", "Can void an unpaid invoice (with a reason)"),
            ("issue_credit_note", "Can issue a credit note for a paid invoice"),
            ("reissue_invoice", "Can re-issue the month of a void invoice (with a reason)"),
            ("record_transfer", "Can record a bank transfer paying an invoice"),
        ]
        constraints = [
            # Void invoices stay (their numbers are part of the series) beside the month's re-issue.
            models.UniqueConstraint(
                fields=["organisation", "month"],
                condition=~models.Q(status="void"),
                name="invoice_one_live_per_organisation_month",
            ),
            models.CheckConstraint(
                condition=models.Q(number__regex=r"^INV-[0-9]{4}-[0-9]{6}$")
                | models.Q(number__isnull=True, total_krw=0),
                name="invoice_number_or_zero_statement",
            ),
            models.CheckConstraint(
                condition=models.Q(total_krw=models.F("supply_krw") + models.F("vat_krw")), name="invoice_total"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="open") | models.Q(due_on__isnull=False), name="invoice_open_has_due_date"
            ),
        ]
        # /metrics: open and overdue invoices, read without scanning paid ones.
        indexes = [models.Index(fields=["due_on"], condition=models.Q(status="open"), name="invoice_open_due_idx")]

    def __str__(self) -> str:
        if self.number:
            return self.number
        return _("%(month)s statement #%(pk)s") % {"month": f"{self.month:%Y-%m}", "pk": self.pk}

    @property
    def buyer_name_shown(self) -> str:
        """The buyer's name as frozen at issue, in the reader's language where it has one."""
        return self.buyer_name_en if self.buyer_name_en and get_language() == "en" else self.buyer_name

    @property
    def reference(self) -> str:
        """The invoice's name in what the services store and log (event reasons, the invoicing
        run's lines, e-mail skip reasons): English whatever language a job or command runs in,
        as the rest of that text is (shown translated by `InvoiceEvent.reason_text`)."""
        return self.number or f"{self.month:%Y-%m} statement #{self.pk}"

    @property
    def is_statement(self) -> bool:
        """A ₩0 month that only drew prepaid hours: no number, nothing to pay."""
        return self.number is None

    @property
    def amount_due_krw(self) -> int:
        """What paying this invoice settles: its own total and the amounts carried into it."""
        return self.total_krw + self.carried_krw

    @property
    def card_payable(self) -> bool:
        """Open, not marked for bank transfer, and an amount due Stripe takes in one card payment
        (a saved card or Checkout); nothing else is ever sent to Stripe."""
        from billing.stripe_client import card_can_collect

        return self.status == self.Status.OPEN and not self.transfer_only and card_can_collect(self.amount_due_krw)

    @property
    def pays_by_transfer(self) -> bool:
        """Open and collected only by bank transfer: marked so, or above what one card payment
        takes. (An amount below the minimum is carried forward instead, never transferred.)"""
        from billing.stripe_client import MAX_CHARGE_KRW

        return self.status == self.Status.OPEN and (self.transfer_only or self.amount_due_krw > MAX_CHARGE_KRW)

    @property
    def waits_to_be_collected(self) -> bool:
        """Carried forward and not yet on a later invoice: settled by the next invoice, or by
        finance (a bank transfer or a write-off) when none comes."""
        return self.status == self.Status.CARRIED and self.carried_into_id is None

    def can_transition(self, new: str) -> bool:
        return new in self.ALLOWED[self.status]

    def is_overdue(self, today: date | None = None) -> bool:
        return self.status == self.Status.OPEN and self.due_on < (today or timezone.localdate())


class InvoiceLine(models.Model):
    """One grant x kind x rate period of the month: GPU-minutes and the whole-won amount, rounded
    half-up on this line."""

    class Kind(models.TextChoices):
        SUBSIDISED = "subsidised", _("Subsidised hours (co-payment)")
        PREPAID = "prepaid", _("Prepaid hours")
        BILLABLE = "billable", _("Billable hours")

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines", verbose_name=_("invoice"))
    grant = models.ForeignKey(
        "allocations.Grant", on_delete=models.PROTECT, related_name="invoice_lines", verbose_name=_("grant")
    )
    kind = models.CharField(pgettext_lazy("invoice line", "kind"), max_length=16, choices=Kind.choices)
    # A text snapshot of the GPU model's code, not a reference: a finalised invoice never changes.
    gpu_model = models.CharField(_("GPU model"), max_length=32)
    # "From" alone is also an old status ("이전"): here it is where the period starts.
    period_start = models.DateTimeField(pgettext_lazy("period start", "from"))
    period_end = models.DateTimeField(pgettext_lazy("period end", "until"))
    gpu_minutes = models.PositiveBigIntegerField(_("GPU-minutes"))
    krw_per_gpu_hour = models.PositiveIntegerField(_("KRW per GPU-hour"))
    percent = models.PositiveSmallIntegerField(_("percent charged"))
    amount_krw = models.BigIntegerField(_("amount (KRW)"))
    # The pack a prepaid line drew from (packs are drawn oldest first, each only after its purchase).
    hour_pack = models.ForeignKey(
        "billing.HourPack", on_delete=models.PROTECT, null=True, blank=True, related_name="lines",
        verbose_name=_("hour pack"),
    )  # fmt: skip
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("invoice line")
        verbose_name_plural = _("invoice lines")
        ordering = ["invoice", "position"]

    def __str__(self) -> str:
        """What an invoice's inline row is titled: grant, kind, GPU-minutes and amount, grouped."""
        return _("Grant #%(grant)s · %(kind)s · %(minutes)s GPU-minutes · ₩%(amount)s") % {
            "grant": self.grant_id, "kind": self.get_kind_display(), "minutes": grouped(self.gpu_minutes),
            "amount": grouped(self.amount_krw),
        }  # fmt: skip

    @property
    def gpu_hours(self):
        from decimal import Decimal

        return (Decimal(self.gpu_minutes) / 60).quantize(Decimal("0.01"))


class InvoiceEvent(models.Model):
    """One change of an invoice's status; the statuses are the invoice's (shown by their labels)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="events", verbose_name=_("invoice"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("actor")
    )
    old_status = models.CharField(_("old status"), max_length=8, blank=True, choices=Invoice.Status.choices)
    new_status = models.CharField(_("new status"), max_length=8, choices=Invoice.Status.choices)
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("invoice event")
        verbose_name_plural = _("invoice events")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_old_status_display() or '–'} → {self.get_new_status_display()}"

    @property
    def reason_text(self) -> str:
        """The reason in the reader's language where a billing service wrote it (`billing.reasons`);
        what finance typed (after "void: ") stays as typed."""
        return INVOICE_REASONS.show(self.reason)


class InvoiceDocument(models.Model):
    """The invoice's PDF, rendered once when the invoice is finalised and never again: later
    changes to templates, rates or names cannot change a document already sent. `sha256` is the
    digest of `content` at rendering (checked when served)."""

    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, primary_key=True, related_name="document")
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    rendered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("invoice document")
        verbose_name_plural = _("invoice documents")

    def __str__(self) -> str:
        return f"{self.invoice_id}: {self.sha256[:12]}"


class InvoiceCounter(models.Model):
    """The last number given in a year; locked (SELECT … FOR UPDATE) in the transaction that
    creates the invoice, so numbers are gapless: a rolled-back invoice gives its number back."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"
