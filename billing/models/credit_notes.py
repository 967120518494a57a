"""Credit notes: a paid invoice is never changed; money owed back is a credit note of its own,
numbered CN-YYYY-NNNNNN without gaps per year, with negative amounts and its own PDF rendered
once at issue."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class CreditNote(models.Model):
    """Issued only by billing.services.credit_notes.credit_note_issue; never edited."""

    invoice = models.ForeignKey(
        "billing.Invoice", on_delete=models.PROTECT, related_name="credit_notes", verbose_name=_("invoice")
    )
    number = models.CharField(_("number"), max_length=16, unique=True)
    issued_on = models.DateField(_("issued on"))
    reason = models.TextField(_("reason"))
    # Negative: what the organisation is owed back.
    supply_krw = models.BigIntegerField(_("supply value (KRW)"))
    vat_krw = models.BigIntegerField(_("VAT (KRW)"))
    total_krw = models.BigIntegerField(_("total (KRW)"))
    document = models.BinaryField(_("document (PDF)"), editable=False)
    document_sha256 = models.CharField(_("document SHA-256"), max_length=64, editable=False)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("issued by")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("credit note")
        verbose_name_plural = _("credit notes")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(number__regex=r"^CN-[0-9]{4}-[0-9]{6}$"), name="credit_note_number"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    supply_krw__lt=0, vat_krw__lte=0, total_krw=models.F("supply_krw") + models.F("vat_krw")
                ),
                name="credit_note_negative_total",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class CreditNoteCounter(models.Model):
    """The last credit note number of a year, locked in the issuing transaction (gapless)."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"
