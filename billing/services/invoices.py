"""Monthly invoices. Each organisation's invoice is issued in its own transaction that locks the
organisation row (two runs at once: the second waits, then finds the invoice) and the year's
counter row (numbers without gaps: a rolled-back invoice gives its number back). A run killed
between organisations resumes where it stopped; rerunning a month changes nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing import ledger
from billing.models import BillingAccount, Invoice, InvoiceCounter, InvoiceEvent, InvoiceLine
from billing.pdf import invoice_document_store
from billing.services.consequences import grants_resume_after_payment
from billing.services.invoicing_runs import invoicing_run_finish, invoicing_run_start, invoicing_run_step
from billing.services.numbering import next_number
from billing.services.recipients import INVOICE_AUDIENCE
from billing.services.statements import organisation_statement, organisations_with_usage
from portal.errors import PortalError
from portal.mail import mailing_enqueue
from portal.models import Organisation
from portal.outbox import outbox_enqueue
from portal.progress import elapsed_text

log = logging.getLogger(__name__)
I = Invoice.Status  # noqa: E741
CHARGE_JOB = "billing.jobs.invoice_charge_job"


def organisation_has_overdue_invoice(organisation_id: int) -> bool:
    """True when an invoice of the organisation is open past its due date (eligibility rule)."""
    return Invoice.objects.overdue().filter(organisation_id=organisation_id).exists()


def organisation_unpaid_invoices(organisation_id: int) -> list[Invoice]:
    """Open invoices, oldest first (the reviewers' view of the organisation's history)."""
    return list(Invoice.objects.filter(organisation_id=organisation_id, status=I.OPEN).order_by("month"))


def _notify(invoice: Invoice, template: str, **context) -> None:
    """The billing members (or owners) as they are when the e-mail is sent, each in their own
    language (the last one they used here)."""
    mailing_enqueue(
        template=template,
        audience=INVOICE_AUDIENCE,
        objects={"invoice": invoice},
        organisation_id=invoice.organisation_id,
        context=context,
    )


@transaction.atomic
def invoice_issue(*, organisation_id: int, month: date, today: date | None = None) -> tuple[Invoice | None, bool]:
    """The organisation's invoice for `month`: (invoice, created). (None, False) when the month
    has nothing to invoice (no charge and no prepaid hours drawn)."""
    month = month.replace(day=1)
    organisation = Organisation.objects.select_for_update().get(pk=organisation_id)
    existing = Invoice.objects.filter(organisation=organisation, month=month).first()
    if existing is not None:
        invoice_document_store(invoice_id=existing.pk)  # issued before documents were stored
        return existing, False
    start, end = ledger.month_bounds(month)
    result = organisation_statement(organisation=organisation, start=start, end=end)
    if not [x for x in result.lines if x.amount_krw > 0 or x.kind == ledger.PREPAID]:
        return None, False
    today = today or timezone.localdate()
    supply = result.supply_krw
    vat = ledger.vat_of(supply, settings.VAT_PERCENT)
    invoice = Invoice.objects.create(
        organisation=organisation,
        month=month,
        # A ₩0 statement takes no number: the series counts only amounts owed, without gaps.
        number=next_number(InvoiceCounter, "INV", today.year) if supply + vat > 0 else None,
        status=I.OPEN if supply + vat > 0 else I.PAID,
        paid_at=None if supply + vat > 0 else timezone.now(),
        issued_on=today,
        due_on=today + timedelta(days=settings.INVOICE_DUE_DAYS),
        supply_krw=supply,
        vat_krw=vat,
        total_krw=supply + vat,
        vat_percent=settings.VAT_PERCENT,
        supplier_name=settings.BILLING_SUPPLIER_NAME,
        supplier_brn=settings.BILLING_SUPPLIER_BRN,
        buyer_name=organisation.name_ko,
        buyer_brn=organisation.business_registration_number or "",
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            grant_id=x.grant_id,
            kind=x.kind,
            gpu_model=x.gpu_model,
            period_start=x.period_start,
            period_end=x.period_end,
            gpu_minutes=x.gpu_minutes,
            krw_per_gpu_hour=x.krw_per_gpu_hour,
            percent=x.percent,
            amount_krw=x.amount_krw,
            hour_pack_id=x.pack_id,
            position=n,
        )
        for n, x in enumerate(result.lines)
    )
    InvoiceEvent.objects.create(invoice=invoice, old_status="", new_status=invoice.status, reason="issued")
    invoice_document_store(invoice_id=invoice.pk)  # the PDF, frozen with the invoice
    if invoice.is_statement:
        return invoice, True  # nothing to pay: no e-mail, no charge
    _notify(invoice, "invoice_issued")
    account = BillingAccount.objects.filter(organisation=organisation).first()
    if invoice.status == I.OPEN and account is not None and account.has_card:
        outbox_enqueue(CHARGE_JOB, invoice.pk)
    return invoice, True


def invoices_run(*, month: date, out: Callable[[str], None] = log.info, today: date | None = None) -> dict:
    """Issue every organisation's invoice for `month`, one transaction each, printing progress
    (n of N, the organisation, elapsed) and recording it on an InvoicingRun row after each
    organisation, which the admin shows while the run goes on. An organisation whose usage
    cannot be priced, or whose invoice fails for any other reason (its transaction is rolled
    back: no number used), is reported FAILED and skipped; the others go on (the periodic job
    runs once a month)."""
    began = time.monotonic()
    start, end = ledger.month_bounds(month)
    orgs = list(organisations_with_usage(start, end).values_list("pk", "name_ko"))
    counts = {"issued": 0, "existing": 0, "nothing": 0, "failed": 0}
    run = invoicing_run_start(month=month, total=len(orgs))
    out(f"{month:%Y-%m}: {len(orgs)} organisations with GPU access")
    for n, (org_id, name) in enumerate(orgs, 1):
        who = f"{name} (organisation {org_id})"
        try:
            invoice, created = invoice_issue(organisation_id=org_id, month=month, today=today)
        except ledger.LedgerError as exc:
            counts["failed"] += 1
            outcome = f"FAILED: {exc}"
        except Exception as exc:
            log.exception("invoicing organisation %s for %s failed", org_id, f"{month:%Y-%m}")
            counts["failed"] += 1
            outcome = f"FAILED: {type(exc).__name__}: {exc}"
        else:
            if invoice is None:
                counts["nothing"] += 1
                outcome = "nothing to invoice"
            else:
                counts["issued" if created else "existing"] += 1
                outcome = f"{invoice} ₩{invoice.total_krw:,} {'issued' if created else 'already issued'}"
        line = f"[{n}/{len(orgs)}] {who}: {outcome} ({elapsed_text(time.monotonic() - began)})"
        out(line)
        invoicing_run_step(run=run, done=n, current=who, counts=counts, line=line)
    summary = f"{month:%Y-%m}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    summary += f" in {elapsed_text(time.monotonic() - began)}"
    out(summary)
    failed = f"{counts['failed']} organisations could not be invoiced" if counts["failed"] else ""
    invoicing_run_finish(run=run, line=summary, error=failed)
    return counts


def _transition(invoice: Invoice, new: str, *, actor=None, reason: str = "") -> Invoice:
    if not invoice.can_transition(new):
        raise PortalError(_("This invoice can no longer change."), code="bad_transition")
    old = invoice.status
    invoice.status = new
    if new == I.PAID:
        invoice.paid_at = timezone.now()
    invoice.save(update_fields=["status", "paid_at"])
    InvoiceEvent.objects.create(invoice=invoice, actor=actor, old_status=old, new_status=new, reason=reason)
    return invoice


def _payment_known(invoice: Invoice, payment_ref: str) -> bool:
    """True when an event of the invoice already names this payment (a second notice of it)."""
    return not payment_ref or invoice.events.filter(reason__contains=f"[{payment_ref}]").exists()


@transaction.atomic
def invoice_mark_paid(*, invoice_id: int, reason: str, actor=None, payment_ref: str = "") -> Invoice:
    """Paid once: a second notice of the same payment (webhook after the charge's own answer, a
    replay) finds it paid and changes nothing. Grants suspended for non-payment come back.
    `payment_ref` (the Stripe PaymentIntent) is kept in the events: another payment arriving for
    an invoice already paid (a Checkout page paid after the saved card was charged) or void is
    recorded once as to refund, and `invoice.payment_to_refund` says so to the caller."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    invoice.payment_to_refund = False
    if payment_ref:
        reason = f"{reason} [{payment_ref}]"
    if invoice.status == I.OPEN:
        _transition(invoice, I.PAID, actor=actor, reason=reason)
        _notify(invoice, "invoice_paid")
        grants_resume_after_payment(organisation_id=invoice.organisation_id)
        return invoice
    known = _payment_known(invoice, payment_ref)
    if invoice.status == I.VOID:
        # Money arrived for an invoice finance voided: it stays void; finance refunds the payment.
        invoice.payment_to_refund = True
        if payment_ref and known:
            return invoice  # this payment is already recorded as to refund
        note = f"payment received after void, to refund: {reason}"
    elif not known:
        # Paid twice (two payments, not two notices of one): it stays paid; finance refunds one.
        invoice.payment_to_refund = True
        note = f"paid again, to refund: {reason}"
    else:
        return invoice
    log.warning("payment to refund for invoice %s: %s", invoice.pk, reason)
    InvoiceEvent.objects.create(
        invoice=invoice, actor=actor, old_status=invoice.status, new_status=invoice.status, reason=note
    )
    return invoice


@transaction.atomic
def invoice_void(*, invoice_id: int, actor, reason: str) -> Invoice:
    """Finance (permission `billing.void_invoice`) voids an unpaid invoice, with a reason kept in
    the invoice's events (actor, time, reason: the audit trail). The number stays used (a void
    invoice is part of the gapless series); prepaid hours it drew go back to their packs; it is no
    longer charged, no longer overdue, and grants suspended for it come back. A paid invoice
    cannot be voided (that needs a credit note)."""
    if not (actor is not None and actor.has_perm("billing.void_invoice")):
        raise PortalError(_("Only finance staff can void an invoice."), code="forbidden")
    reason = (reason or "").strip()
    if not reason:
        raise PortalError(_("Say why the invoice is void."), code="reason")
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != I.OPEN:
        raise PortalError(_("Only an unpaid invoice can be voided."), code="not_open")
    _transition(invoice, I.VOID, actor=actor, reason=f"void: {reason}")
    grants_resume_after_payment(organisation_id=invoice.organisation_id)
    return invoice


@transaction.atomic
def invoice_payment_failed(*, invoice_id: int, error: str) -> Invoice:
    """A failed charge: the invoice stays open, billing members are told, a retry comes later."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != I.OPEN:
        return invoice
    invoice.last_payment_error = error[:2000]
    invoice.save(update_fields=["last_payment_error"])
    InvoiceEvent.objects.create(
        invoice=invoice, old_status=I.OPEN, new_status=I.OPEN, reason=f"payment failed: {error}"
    )
    _notify(invoice, "invoice_payment_failed", error=error)
    return invoice
