"""Monthly invoices. Each organisation's invoice is issued in its own transaction that locks the
organisation row (two runs at once: the second waits, then finds the invoice) and the year's
counter row (numbers without gaps: a rolled-back invoice gives its number back). A run killed
between organisations resumes where it stopped; rerunning a month changes nothing. A month whose
invoice finance voided is re-issued only by finance (`invoice_reissue`), never by the run.

Amounts Stripe cannot take by card are never sent to it (`stripe_client.card_can_collect`): a
month whose amount due is below the minimum charge is issued, numbered and taxed as usual but
carried forward (status `carried`: not charged, not due, never overdue), and the organisation's
next invoice with an amount collects it once (`carried_into`, `carried_krw`); paying that invoice
pays every invoice carried into it. Above Stripe's maximum the invoice is `transfer_only`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing import ledger, stripe_client
from billing.models import BillingAccount, Invoice, InvoiceCounter, InvoiceEvent, InvoiceLine
from billing.models.invoices import AMOUNT_DUE_KRW
from billing.pdf import invoice_document_store
from billing.services.consequences import grants_resume_after_payment
from billing.services.invoicing_runs import invoicing_run_finish, invoicing_run_start, invoicing_run_step
from billing.services.numbering import next_number
from billing.services.recipients import INVOICE_AUDIENCE, INVOICE_NOT_VOID, INVOICE_STILL_CARRIED, INVOICE_STILL_OPEN
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


def _notify(invoice: Invoice, template: str, *, while_open: bool = False, condition: str = "", **context) -> None:
    """The billing members (or owners) as they are when the e-mail is sent, each in their own
    language (the last one they used here). `while_open`: an e-mail about the invoice being open
    (a failed charge, payable by transfer) is skipped if it was settled before it went out;
    `condition`: another such check (the issue's e-mail is skipped for an invoice voided since)."""
    mailing_enqueue(
        template=template,
        audience=INVOICE_AUDIENCE,
        objects={"invoice": invoice},
        organisation_id=invoice.organisation_id,
        context={"bank_account": settings.BILLING_BANK_ACCOUNT, **context},
        condition=INVOICE_STILL_OPEN if while_open else condition,
    )


def _lock_organisation(organisation_id: int) -> Organisation:
    """The organisation's row, locked against another run or re-issue of its invoices (they wait
    for each other) but not against rows that merely reference it: FOR NO KEY UPDATE. A payment
    locks its invoice first and then inserts a Mailing or an event naming the organisation (a
    key-share lock); with FOR UPDATE here the run (organisation, then invoices) and the payment
    (invoice, then organisation) would deadlock."""
    return Organisation.objects.select_for_update(no_key=True).get(pk=organisation_id)


def month_statement(*, organisation: Organisation, month: date) -> tuple[ledger.Statement, int]:
    """The organisation's ledger lines for `month` as the ledger is now (rates, intervals, packs,
    subsidy), and the VAT on them: what an invoice of the month bills, whether issued by the run,
    re-issued by finance, or previewed before a re-issue. The one place invoicing prices a month."""
    start, end = ledger.month_bounds(month)
    result = organisation_statement(organisation=organisation, start=start, end=end)
    return result, ledger.vat_of(result.supply_krw, settings.VAT_PERCENT)


def _invoice_create(
    *, organisation: Organisation, month: date, today: date | None, actor=None, reason: str = "", replaces=None
) -> Invoice | None:
    """A new invoice of the month, priced now, with its lines, its first event (`actor`,
    `reason`, by default what issuing did: carried forward, payable by transfer), collecting the
    months carried forward before it, its stored PDF, the e-mail and the charge job; None when the month has nothing to
    invoice (no charge and no prepaid hours drawn). The caller holds the organisation's row lock
    and has checked that the month has no live invoice."""
    result, vat = month_statement(organisation=organisation, month=month)
    if not [x for x in result.lines if x.amount_krw > 0 or x.kind == ledger.PREPAID]:
        return None
    today = today or timezone.localdate()
    supply = result.supply_krw
    # Earlier months carried forward (below the minimum card charge), collected once: by the first
    # invoice with an amount issued after them (a ₩0 statement collects nothing).
    waiting = carried_waiting(organisation_id=organisation.pk, month=month, lock=True) if supply + vat > 0 else []
    carried = sum(x.amount_due_krw for x in waiting)
    due = supply + vat + carried
    status = _status_at_issue(supply + vat, due)
    invoice = Invoice.objects.create(
        organisation=organisation,
        month=month,
        # A ₩0 statement takes no number: the series counts only amounts owed, without gaps.
        number=next_number(InvoiceCounter, "INV", today.year) if supply + vat > 0 else None,
        status=status,
        paid_at=None if supply + vat > 0 else timezone.now(),
        carried_krw=carried,
        transfer_only=due > stripe_client.MAX_CHARGE_KRW,
        issued_on=today,
        due_on=None if status == I.CARRIED else today + timedelta(days=settings.INVOICE_DUE_DAYS),
        supply_krw=supply,
        vat_krw=vat,
        total_krw=supply + vat,
        vat_percent=settings.VAT_PERCENT,
        supplier_name=settings.BILLING_SUPPLIER_NAME,
        supplier_name_en=settings.BILLING_SUPPLIER_NAME_EN,
        supplier_brn=settings.BILLING_SUPPLIER_BRN,
        buyer_name=organisation.name_ko,
        buyer_name_en=organisation.name_en,
        buyer_brn=organisation.business_registration_number or "",
        replaces=replaces,
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
    InvoiceEvent.objects.create(
        invoice=invoice,
        actor=actor,
        old_status="",
        new_status=invoice.status,
        reason=reason or _issue_reason(invoice, due),
    )
    _collect_carried(waiting, into=invoice)  # before the PDF: it lists what it collects
    invoice_document_store(invoice_id=invoice.pk)  # the PDF, frozen with the invoice
    if invoice.is_statement:
        return invoice  # nothing to pay: no e-mail, no charge
    _notify(invoice, "invoice_issued", condition=INVOICE_NOT_VOID)
    account = BillingAccount.objects.filter(organisation=organisation).first()
    if invoice.card_payable and account is not None and account.has_card:
        outbox_enqueue(CHARGE_JOB, invoice.pk)
    return invoice


@transaction.atomic
def invoice_issue(*, organisation_id: int, month: date, today: date | None = None) -> tuple[Invoice | None, bool]:
    """The organisation's invoice for `month`: (invoice, created). (None, False) when the month
    has nothing to invoice (no charge and no prepaid hours drawn). A month already invoiced gives
    its live invoice or, when finance voided it and has not re-issued it, the void one: the run
    never issues a voided month again by itself (finance re-issues it: `invoice_reissue`)."""
    month = month.replace(day=1)
    organisation = _lock_organisation(organisation_id)
    invoices = Invoice.objects.filter(organisation=organisation, month=month)
    existing = min(invoices, key=lambda x: (x.status == I.VOID, -x.pk), default=None)  # live first, then newest
    if existing is not None:
        invoice_document_store(invoice_id=existing.pk)  # issued before documents were stored
        return existing, False
    invoice = _invoice_create(organisation=organisation, month=month, today=today)
    return invoice, invoice is not None


@transaction.atomic
def invoice_reissue(*, invoice_id: int, actor, reason: str, today: date | None = None) -> Invoice:
    """Finance (permission `billing.reissue_invoice`) re-issues the month of a void invoice: a
    new invoice, with the next number of the gapless series, priced from the ledger as it is now
    (`month_statement`: a corrected rate, interval or buyer name counts), naming the void invoice
    it replaces; who, when and why are kept in both invoices' events. The void invoice keeps its
    number, PDF and credit notes. Its prepaid hours were released by the void (void invoices draw
    nothing) and the re-issue draws what is left once, like any invoice of the month.

    Refused while the month has a live invoice, and for a void invoice already re-issued (re-issue
    its re-issue instead). The organisation's row is locked first, as the monthly run locks it: two
    re-issues at once (a double click), or a re-issue during the run, wait for each other and the
    second finds the first's invoice; the partial unique constraint (one live invoice per
    organisation and month) holds whatever the code does."""
    if not (actor is not None and actor.has_perm("billing.reissue_invoice")):
        raise PortalError(_("Only finance staff can re-issue an invoice."), code="forbidden")
    reason = (reason or "").strip()
    if not reason:
        raise PortalError(_("Say why the month is re-issued."), code="reason")
    organisation_id = Invoice.objects.values_list("organisation_id", flat=True).get(pk=invoice_id)
    organisation = _lock_organisation(organisation_id)
    void = Invoice.objects.select_for_update().get(pk=invoice_id)
    invoice_reissue_check(void)
    try:
        invoice = _invoice_create(
            organisation=organisation,
            month=void.month,
            today=today,
            actor=actor,
            reason=f"re-issued, replaces {void.reference}: {reason}",
            replaces=void,
        )
    except ledger.LedgerError as exc:
        raise PortalError(_("The month cannot be priced: %(error)s") % {"error": exc}, code="ledger") from exc
    if invoice is None:
        raise PortalError(
            _("The month has nothing to invoice now (no charge, no prepaid hours drawn): nothing is issued."),
            code="nothing",
        )
    InvoiceEvent.objects.create(
        invoice=void,
        actor=actor,
        old_status=I.VOID,
        new_status=I.VOID,
        reason=f"re-issued as {invoice.reference}: {reason}",
    )
    log.info("invoice %s re-issued as %s by %s", void.reference, invoice.reference, actor.pk)
    return invoice


def invoice_reissue_check(void: Invoice) -> None:
    """Raises the reason `invoice_reissue` refuses the invoice's month now (the admin's page says
    it before asking for a reason; the service asks again under the locks)."""
    if void.status != I.VOID:
        raise PortalError(_("Only a void invoice can be re-issued: void it first."), code="not_void")
    live = Invoice.objects.filter(organisation_id=void.organisation_id, month=void.month).exclude(status=I.VOID)
    if live.exists():
        raise PortalError(
            _("%(number)s is this month's invoice: void it first if it is wrong.") % {"number": live.first()},
            code="live",
        )
    replacement = Invoice.objects.filter(replaces=void).first()
    if replacement is not None:
        raise PortalError(
            _("This invoice was re-issued as %(number)s already: re-issue that one.") % {"number": replacement},
            code="replaced",
        )


def carried_waiting(*, organisation_id: int, month: date, lock: bool = False) -> list[Invoice]:
    """Earlier months carried forward (below the minimum card charge) that no invoice collects
    yet: what the next invoice with an amount for `month` collects (and the re-issue page shows)."""
    qs = Invoice.objects.select_for_update() if lock else Invoice.objects.all()
    return list(
        qs.filter(
            organisation_id=organisation_id, status=I.CARRIED, carried_into__isnull=True, month__lt=month
        ).order_by("month", "pk")
    )


def _collect_carried(waiting: list[Invoice], *, into: Invoice) -> None:
    """Each waiting carried-forward invoice (locked by the caller) is collected by `into`, once."""
    for earlier in waiting:
        earlier.carried_into = into
        earlier.save(update_fields=["carried_into"])
        InvoiceEvent.objects.create(
            invoice=earlier, old_status=I.CARRIED, new_status=I.CARRIED, reason=f"collected with {into.number}"
        )


def _status_at_issue(total: int, due: int) -> str:
    """A ₩0 statement is settled; an amount due below the minimum card charge is carried forward."""
    if total == 0:
        return I.PAID
    return I.CARRIED if due < settings.STRIPE_MIN_CHARGE_KRW else I.OPEN


def _issue_reason(invoice: Invoice, due: int) -> str:
    if invoice.status == I.CARRIED:
        return f"issued; ₩{due:,} is below the minimum card charge ₩{settings.STRIPE_MIN_CHARGE_KRW:,}: carried forward"
    if invoice.transfer_only:
        return f"issued; ₩{due:,} is above the maximum card charge: payable by bank transfer"
    return "issued"


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
    counts = {"issued": 0, "existing": 0, "void": 0, "nothing": 0, "failed": 0}
    run = invoicing_run_start(month=month, total=len(orgs))
    out(f"{month:%Y-%m}: {len(orgs)} organisation{'' if len(orgs) == 1 else 's'} with GPU access")
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
            elif invoice.status == I.VOID:
                counts["void"] += 1
                outcome = f"{invoice.reference} void, not invoiced again (finance re-issues the month from the admin)"
            else:
                counts["issued" if created else "existing"] += 1
                outcome = f"{invoice.reference} ₩{invoice.total_krw:,} {'issued' if created else 'already issued'}"
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


def _settle_carried(invoice: Invoice, new: str, *, actor=None, reason: str) -> None:
    """The invoices carried into `invoice` (and, in turn, into those) settle with it."""
    for earlier in Invoice.objects.select_for_update().filter(carried_into=invoice, status=I.CARRIED).order_by("pk"):
        _transition(earlier, new, actor=actor, reason=reason)
        _settle_carried(earlier, new, actor=actor, reason=reason)


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
    if invoice.status == I.OPEN or invoice.waits_to_be_collected:
        _transition(invoice, I.PAID, actor=actor, reason=reason)
        _settle_carried(invoice, I.PAID, actor=actor, reason=f"paid with {invoice.number}")
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


def invoice_void_check(invoice: Invoice) -> None:
    """Raises why `invoice_void` refuses the invoice now: only an unpaid one can be voided."""
    if not (invoice.status == I.OPEN or invoice.waits_to_be_collected):
        raise PortalError(_("Only an unpaid invoice can be voided."), code="not_open")


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
    invoice_void_check(invoice)
    _transition(invoice, I.VOID, actor=actor, reason=f"void: {reason}")
    # What it collected from earlier months is owed still: the next invoice collects it again.
    for earlier in Invoice.objects.select_for_update().filter(carried_into=invoice, status=I.CARRIED):
        earlier.carried_into = None
        earlier.save(update_fields=["carried_into"])
        InvoiceEvent.objects.create(
            invoice=earlier, actor=actor, old_status=I.CARRIED, new_status=I.CARRIED,
            reason=f"{invoice.number} was voided: carried forward again",
        )  # fmt: skip
    grants_resume_after_payment(organisation_id=invoice.organisation_id)
    return invoice


@transaction.atomic
def invoice_card_amount_refused(*, invoice_id: int, code: str, error: str) -> Invoice:
    """Stripe refused the card payment because of its amount (`amount_too_small`,
    `amount_too_large`): not a decline. No attempt is counted and nobody is told their card
    failed; too small, the invoice is carried forward (not due, never overdue); too large, it is
    payable by bank transfer, with a fresh due date, so the refusal itself never makes it overdue,
    and the billing members are told to transfer (with the account). Either way the invoice is no
    longer overdue: grants suspended for it come back (none is left suspended with nothing due)."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != I.OPEN:
        return invoice
    log.warning("Stripe refused invoice %s for its amount (%s): %s", invoice.pk, code, error)
    if code == "amount_too_small":
        _carry_forward(invoice, reason=f"card payment refused for the amount ({code}): carried forward")
        return invoice
    invoice.transfer_only = True
    invoice.due_on = max(invoice.due_on, timezone.localdate() + timedelta(days=settings.INVOICE_DUE_DAYS))
    invoice.save(update_fields=["transfer_only", "due_on"])
    InvoiceEvent.objects.create(
        invoice=invoice, old_status=I.OPEN, new_status=I.OPEN,
        reason=f"card payment refused for the amount ({code}): payable by bank transfer until {invoice.due_on}",
    )  # fmt: skip
    _notify(invoice, "invoice_transfer_only", while_open=True)
    grants_resume_after_payment(organisation_id=invoice.organisation_id)
    return invoice


def _carry_forward(invoice: Invoice, *, reason: str) -> None:
    """The open, locked `invoice` is carried forward: not due from now on, collected by the next
    invoice with an amount; grants suspended for it come back (nothing of it is overdue now). The
    billing members, told "due on …" by the e-mail announcing it, are told it is not due now
    (unless that e-mail has not gone out yet: then it says so itself)."""
    _transition(invoice, I.CARRIED, reason=reason)
    invoice.due_on = None  # never due by itself from now on
    invoice.save(update_fields=["due_on"])
    _notify(invoice, "invoice_carried", condition=INVOICE_STILL_CARRIED)
    grants_resume_after_payment(organisation_id=invoice.organisation_id)


@transaction.atomic
def invoice_carry_below_minimum(*, invoice_id: int) -> bool:
    """An open invoice whose amount due is below STRIPE_MIN_CHARGE_KRW (raised after it was
    issued) is carried forward, as issuing it now would: never sent to Stripe, never turned into
    a bank transfer. The one rule for the charge job, the Pay button and the daily pass. True
    when it was carried; an invoice no longer open, or not below the minimum, is left as it is."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    minimum = settings.STRIPE_MIN_CHARGE_KRW
    if invoice.status != I.OPEN or invoice.amount_due_krw >= minimum:
        return False
    _carry_forward(
        invoice, reason=f"₩{invoice.amount_due_krw:,} is below the minimum card charge ₩{minimum:,}: carried forward"
    )
    return True


def invoices_carry_below_minimum() -> list[int]:
    """Every open invoice below the minimum card charge carried forward (`invoice_carry_below_minimum`),
    whether or not the organisation has a saved card. Each in its own transaction; returns their ids."""
    below = Invoice.objects.filter(status=I.OPEN).alias(due=AMOUNT_DUE_KRW)
    ids = list(below.filter(due__lt=settings.STRIPE_MIN_CHARGE_KRW).values_list("pk", flat=True))
    for pk in ids:
        try:
            invoice_carry_below_minimum(invoice_id=pk)
        except Exception:
            log.exception("carrying forward invoice %s below the minimum failed", pk)
    return ids


@transaction.atomic
def invoice_mark_written_off(*, invoice_id: int, actor, reason: str) -> Invoice:
    """A carried-forward amount no later invoice will collect (the organisation's last month),
    written off by finance: the caller (`billing.services.transfers.invoice_write_off`) has
    issued its credit note in this transaction; the invoices carried into it go with it."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if not invoice.waits_to_be_collected:
        raise PortalError(_("Only a carried-forward amount that no invoice collects can be written off."), code="state")
    _transition(invoice, I.WRITTEN_OFF, actor=actor, reason=f"written off: {reason}")
    _settle_carried(invoice, I.WRITTEN_OFF, actor=actor, reason=f"written off with {invoice.number}: {reason}")
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
    _notify(invoice, "invoice_payment_failed", while_open=True, error=error)
    return invoice
