"""Credit notes for paid invoices. A paid invoice never changes; finance (permission
`billing.issue_credit_note`) issues a credit note against it: its own gapless series
CN-YYYY-NNNNNN from a per-year counter row locked in the issuing transaction, negative amounts
(supply value and VAT at the invoice's VAT percent), a reason, and a PDF rendered once, in the
same transaction, and stored with its SHA-256. The credits of one invoice never exceed it.
Paying the money back is done in Stripe (or by bank transfer): the portal records the document."""

from __future__ import annotations

import hashlib
from datetime import date

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import ledger
from billing.models import CreditNote, CreditNoteCounter, Invoice, InvoiceEvent
from billing.pdf import credit_note_pdf
from billing.services.numbering import next_number
from portal.errors import PortalError


def creditable_krw(invoice: Invoice) -> tuple[int, int]:
    """(supply value, VAT) of the invoice not yet credited."""
    done = invoice.credit_notes.aggregate(s=Sum("supply_krw"), v=Sum("vat_krw"))
    return invoice.supply_krw + (done["s"] or 0), invoice.vat_krw + (done["v"] or 0)


def credit_note_check(invoice: Invoice) -> None:
    """Raises why `credit_note_issue` refuses the invoice now: only a paid invoice with an amount
    not yet wholly credited."""
    if invoice.status != Invoice.Status.PAID or invoice.is_statement or invoice.total_krw <= 0:
        raise PortalError(_("A credit note is only for a paid invoice with an amount."), code="not_paid")
    if creditable_krw(invoice)[0] <= 0:
        raise PortalError(_("This invoice is wholly credited already."), code="credited")


@transaction.atomic
def credit_note_issue(
    *, invoice_id: int, actor, reason: str, supply_krw: int | None = None, today: date | None = None
) -> CreditNote:
    """Credit `supply_krw` of a paid invoice's supply value (all that is left when None), with
    VAT at the invoice's percent, rounded half-up and never more than the VAT left to credit."""
    if not (actor is not None and actor.has_perm("billing.issue_credit_note")):
        raise PortalError(_("Only finance staff can issue a credit note."), code="forbidden")
    reason = (reason or "").strip()
    if not reason:
        raise PortalError(_("Say why the credit note is issued."), code="reason")
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    credit_note_check(invoice)
    supply_left, _vat_left = creditable_krw(invoice)
    amount = supply_left if supply_krw is None else supply_krw
    if not 1 <= amount <= supply_left:
        raise PortalError(
            _("Credit between ₩1 and ₩%(left)s of supply value.") % {"left": f"{supply_left:,}"}, code="amount"
        )
    return credit_note_create(invoice=invoice, actor=actor, reason=reason, supply_krw=amount, today=today)


def credit_note_create(
    *, invoice: Invoice, actor, reason: str, supply_krw: int, today: date | None = None
) -> CreditNote:
    """The credit note itself (number, negative amounts, PDF, the invoice's event), for a caller
    that holds the invoice's row lock and has checked the amount (`credit_note_issue`, and
    `billing.services.transfers.invoice_write_off`)."""
    amount = supply_krw
    _supply_left, vat_left = creditable_krw(invoice)
    vat = min(ledger.vat_of(amount, invoice.vat_percent), vat_left)
    note = CreditNote(
        invoice=invoice,
        number=next_number(CreditNoteCounter, "CN", (today or timezone.localdate()).year),
        issued_on=today or timezone.localdate(),
        reason=reason,
        supply_krw=-amount,
        vat_krw=-vat,
        total_krw=-(amount + vat),
        issued_by=actor,
    )
    note.document = credit_note_pdf(note)
    note.document_sha256 = hashlib.sha256(note.document).hexdigest()
    note.save()
    InvoiceEvent.objects.create(
        invoice=invoice, actor=actor, old_status=invoice.status, new_status=invoice.status,
        reason=f"credit note {note.number} (₩{note.total_krw:,}): {reason}",
    )  # fmt: skip
    return note
