"""Settling invoices outside Stripe: bank transfers that finance records (an invoice above
Stripe's maximum, a carried-forward amount no later invoice will collect, or any invoice an
organisation chose to pay by transfer), and writing off an organisation's last small amount with
a credit note. A recorded transfer pays the invoice through `invoice_mark_paid`, exactly as a card
payment does (grants suspended for non-payment come back, the members are told)."""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from billing.models import BankTransfer, CreditNote, Invoice
from billing.services.credit_notes import credit_note_create, creditable_krw
from billing.services.invoices import invoice_mark_paid, invoice_mark_written_off
from portal.errors import PortalError

I = Invoice.Status  # noqa: E741


def bank_transfer_check(invoice: Invoice) -> None:
    """Raises why a transfer cannot pay the invoice now: it must be open, or carried forward and
    not yet on a later invoice (then that invoice is paid)."""
    if invoice.status == I.CARRIED and invoice.carried_into_id is not None:
        raise PortalError(
            _("This amount is collected with invoice %(number)s: settle that invoice.")
            % {"number": invoice.carried_into.number},
            code="collected",
        )
    if not (invoice.status == I.OPEN or invoice.waits_to_be_collected):
        raise PortalError(_("This invoice is already settled (%(status)s).") % {"status": invoice.get_status_display()},
                          code="settled")  # fmt: skip


def _not_recorded_elsewhere(*, amount_krw: int, received_on: date, reference: str) -> None:
    """One receipt pays one invoice: the same transfer (bank reference, day and amount) already
    recorded on another invoice is refused (the constraint `bank_transfer_pays_one_invoice` holds
    it when two clerks record it at once). A paid invoice cannot be voided, so finance chooses the
    right invoice before recording, never after."""
    other = (
        BankTransfer.objects.filter(reference=reference, received_on=received_on, amount_krw=amount_krw)
        .select_related("invoice")
        .first()
    )
    if other is not None:
        raise PortalError(
            _(
                "This transfer (reference %(reference)s, received %(day)s, ₩%(amount)s) is already recorded on "
                "invoice %(number)s: one transfer pays one invoice. Check the bank statement for the transfer "
                "that pays this invoice."
            )
            % {
                "reference": reference,
                "day": f"{received_on:%Y-%m-%d}",
                "amount": f"{amount_krw:,}",
                "number": other.invoice.number or other.invoice_id,
            },
            code="recorded_elsewhere",
        )


@transaction.atomic
def bank_transfer_record(
    *, invoice_id: int, actor, amount_krw: int, received_on: date, reference: str
) -> tuple[BankTransfer, bool]:
    """Finance (permission `billing.record_transfer`) records a transfer received for an invoice:
    (transfer, created). The same invoice and bank reference recorded again returns the first
    record and changes nothing (a double click, a second clerk). The amount must be the invoice's
    amount due (its total and what was carried into it); partial transfers are not recorded here.
    Who, when, how much and the reference stay in the transfer row and the invoice's events."""
    if not (actor is not None and actor.has_perm("billing.record_transfer")):
        raise PortalError(_("Only finance staff can record a bank transfer."), code="forbidden")
    reference = (reference or "").strip()
    if not reference:
        raise PortalError(_("Give the bank's reference of the transfer."), code="reference")
    if received_on > timezone.localdate():
        raise PortalError(
            _("A transfer cannot be received after today (%(today)s, Seoul): check the date.")
            % {"today": f"{timezone.localdate():%Y-%m-%d}"},
            code="future",
        )
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    existing = BankTransfer.objects.filter(invoice=invoice, reference=reference).first()
    if existing is not None:
        return existing, False
    bank_transfer_check(invoice)
    if amount_krw != invoice.amount_due_krw:
        raise PortalError(
            _("The amount due is ₩%(due)s: record a transfer of exactly that amount.")
            % {"due": f"{invoice.amount_due_krw:,}"},
            code="amount",
        )
    _not_recorded_elsewhere(amount_krw=amount_krw, received_on=received_on, reference=reference)
    try:
        with transaction.atomic():
            transfer = BankTransfer.objects.create(
                invoice=invoice, amount_krw=amount_krw, received_on=received_on, reference=reference, recorded_by=actor
            )
    except IntegrityError:  # recorded at the same moment by someone else (here, or on another invoice)
        same = BankTransfer.objects.filter(invoice=invoice, reference=reference).first()
        if same is None:
            _not_recorded_elsewhere(amount_krw=amount_krw, received_on=received_on, reference=reference)
            raise
        return same, False
    invoice_mark_paid(
        invoice_id=invoice.pk,
        actor=actor,
        reason=f"bank transfer of ₩{amount_krw:,} received {received_on:%Y-%m-%d}, recorded by {actor.email}",
        payment_ref=f"transfer {reference}",
    )
    return transfer, True


def _written_off_label() -> str:
    """ "대손 처리 / Written off": the part of a write-off credit note's reason the portal writes,
    in both languages like the rest of the bilingual PDF (the reason finance typed follows as is)."""
    with translation.override("ko"):
        korean = str(Invoice.Status.WRITTEN_OFF.label)
    with translation.override("en"):
        english = str(Invoice.Status.WRITTEN_OFF.label)
    return f"{korean} / {english}"


def _carried_chain(invoice: Invoice) -> list[Invoice]:
    """The invoice and every invoice carried into it, in turn (locked)."""
    chain, todo = [], [invoice]
    while todo:
        current = todo.pop()
        chain.append(current)
        todo.extend(Invoice.objects.select_for_update().filter(carried_into=current, status=I.CARRIED).order_by("pk"))
    return chain


def invoice_write_off_check(invoice: Invoice) -> None:
    """Raises why `invoice_write_off` refuses the invoice now: only a carried-forward amount that
    no later invoice collects."""
    bank_transfer_check(invoice)
    if invoice.status != I.CARRIED:
        raise PortalError(_("Only a carried-forward amount can be written off; void an open invoice."), code="open")


@transaction.atomic
def invoice_write_off(*, invoice_id: int, actor, reason: str) -> list[CreditNote]:
    """Write off a carried-forward amount that no later invoice will collect (the organisation's
    last month), with a reason: a credit note for the whole of each invoice involved (the one
    chosen and those carried into it), through the credit-note mechanism (permission
    `billing.issue_credit_note`), and the invoices become `written off`. Nothing else can."""
    if not (actor is not None and actor.has_perm("billing.issue_credit_note")):
        raise PortalError(_("Only finance staff can write an amount off."), code="forbidden")
    reason = (reason or "").strip()
    if not reason:
        raise PortalError(_("Say why the amount is written off."), code="reason")
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    invoice_write_off_check(invoice)
    notes = []
    for each in _carried_chain(invoice):
        supply_left, _vat_left = creditable_krw(each)
        if supply_left > 0:
            notes.append(
                credit_note_create(
                    invoice=each, actor=actor, reason=f"{_written_off_label()}: {reason}", supply_krw=supply_left
                )
            )
    invoice_mark_written_off(invoice_id=invoice.pk, actor=actor, reason=reason)
    return notes
