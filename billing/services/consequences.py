"""What unpaid invoices and spent subsidies do to grants, always through the grant lifecycle
(`grant_suspend` / `grant_resume`): access is revoked on the nodes, data is kept."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from allocations.models import Grant
from allocations.services.grants import grant_resume, grant_suspend
from billing import ledger
from billing.models import BillingAccount, Invoice, InvoiceLine, SubsidyAlert
from billing.policy import PastSubsidy
from billing.services.recipients import SUBSIDY_AUDIENCE
from billing.services.statements import grant_subsidy_used_minutes, organisation_statement, pack_minutes_left
from portal.mail import mailing_enqueue

log = logging.getLogger(__name__)
G = Grant.Status
# Written into the grant's status_reason: only grants suspended for this reason come back on payment.
OVERDUE_REASON = "suspended: invoice overdue"
SUBSIDY_SPENT_REASON = "suspended: subsidised hours used up"
THRESHOLDS = (80, 100)


def _seriously_overdue(organisation_id: int | None = None, today=None):
    cutoff = (today or timezone.localdate()) - timedelta(days=settings.INVOICE_OVERDUE_SUSPEND_DAYS)
    qs = Invoice.objects.filter(status=Invoice.Status.OPEN, due_on__lt=cutoff)
    return qs if organisation_id is None else qs.filter(organisation_id=organisation_id)


def paying_grants(organisation_id: int):
    """Grants that cost the organisation money: a co-payment, or charges on an invoice."""
    charged = InvoiceLine.objects.filter(grant=OuterRef("pk"), amount_krw__gt=0)
    return Grant.objects.filter(organisation_id=organisation_id).filter(Q(copay_percent__gt=0) | Exists(charged))


def invoices_enforce_overdue(*, today=None) -> list[int]:
    """Suspend the paying grants of organisations with an invoice overdue by more than
    INVOICE_OVERDUE_SUSPEND_DAYS. Each grant in its own transaction; returns their ids. Open
    invoices whose amount due is below the card minimum (STRIPE_MIN_CHARGE_KRW raised since they
    were issued) are carried forward first, with or without a saved card: below the minimum an
    invoice is never due, so it never suspends anything."""
    from billing.services.invoices import invoices_carry_below_minimum  # invoices imports this module

    invoices_carry_below_minimum()
    suspended = []
    org_ids = set(_seriously_overdue(today=today).values_list("organisation_id", flat=True))
    for org_id in sorted(org_ids):
        for grant in paying_grants(org_id).filter(status__in=[G.ACTIVE, G.PROVISIONING]):
            try:
                grant_suspend(grant=grant, actor=None, reason=OVERDUE_REASON)
            except Exception:
                log.exception("suspending grant %s for an overdue invoice failed", grant.pk)
                continue
            suspended.append(grant.pk)
    return suspended


def grants_resume_after_payment(*, organisation_id: int, today=None) -> list[int]:
    """Once no invoice of the organisation is seriously overdue, grants suspended for that reason
    get their access back (through provisioning, like any resume)."""
    if _seriously_overdue(organisation_id, today).exists():
        return []
    resumed = []
    for grant in Grant.objects.filter(
        organisation_id=organisation_id, status=G.SUSPENDED, status_reason=OVERDUE_REASON
    ):
        if grant.ends_on < timezone.localdate():
            continue
        grant_resume(grant=grant, actor=None)
        resumed.append(grant.pk)
    return resumed


def grants_resume_after_funding(*, organisation_id: int) -> list[int]:
    """An organisation that saved a card or bought prepaid hours gets back the grants of a
    grace-period call suspended because their subsidy ran out (they are billed from now on).
    Grants of a call that suspends at 100 % stay suspended."""
    resumed = []
    suspended = Grant.objects.filter(
        organisation_id=organisation_id,
        past_subsidy=PastSubsidy.GRACE,
        status=G.SUSPENDED,
        status_reason=SUBSIDY_SPENT_REASON,
        ends_on__gte=timezone.localdate(),
    )
    for grant in suspended:
        if _can_pay_beyond_subsidy(grant, timezone.now()):
            grant_resume(grant=grant, actor=None)
            resumed.append(grant.pk)
    return resumed


def _can_pay_beyond_subsidy(grant: Grant, now: datetime) -> bool:
    """A grace-period grant keeps running past its subsidy (billed at the published rate) when
    the organisation has a saved card or prepaid hours of the grant's GPU model."""
    account = BillingAccount.objects.filter(organisation_id=grant.organisation_id).first()
    if account is not None and account.has_card:
        return True
    month = timezone.localdate(now).replace(day=1)
    left = pack_minutes_left(grant.organisation_id, before=month, until=now).get(grant.gpu_model_id, 0)
    if left <= 0:
        return False
    # Less what this month has drawn so far (the packs' state at the month's start is invoiced).
    start, _end = ledger.month_bounds(month)
    try:
        so_far = organisation_statement(organisation=grant.organisation, start=start, end=now)
    except ledger.LedgerError:
        return True  # usage that cannot be priced: the invoice run reports it; keep the hours
    return left - so_far.prepaid_minutes(grant.gpu_model_id) > 0


@transaction.atomic
def grant_subsidy_check(*, grant_id: int, now: datetime | None = None) -> str:
    """E-mail at 80 % and 100 % of the subsidised hours, once each. Past 100 % the grant's call
    decides (copied onto the grant at approval): SUSPEND suspends it; BILLABLE keeps it running,
    billed; GRACE keeps it running, billed, when the organisation can pay, and suspends it
    SUBSIDY_GRACE_HOURS after the 100 % notice otherwise."""
    now = now or timezone.now()
    grant = Grant.objects.select_for_update().select_related("organisation", "application").get(pk=grant_id)
    if grant.status != G.ACTIVE:
        return "inactive"
    percent = grant_subsidy_used_minutes(grant, until=now) * 100 // (grant.gpu_hours * 60)
    for threshold in THRESHOLDS:
        if percent >= threshold:
            _, created = SubsidyAlert.objects.get_or_create(
                grant=grant, percent=threshold, defaults={"created_at": now}
            )
            if created:
                _alert(grant, threshold)
    if percent < 100:
        return f"{percent}%"
    if grant.past_subsidy == PastSubsidy.SUSPEND:
        grant_suspend(grant=grant, actor=None, reason=SUBSIDY_SPENT_REASON)
        return "suspended"
    if grant.past_subsidy == PastSubsidy.BILLABLE or _can_pay_beyond_subsidy(grant, now):
        return "billed"
    alerted = SubsidyAlert.objects.get(grant=grant, percent=100).created_at
    if now - alerted >= timedelta(hours=settings.SUBSIDY_GRACE_HOURS):
        grant_suspend(grant=grant, actor=None, reason=SUBSIDY_SPENT_REASON)
        return "suspended"
    return "grace"


def _alert(grant: Grant, threshold: int) -> None:
    """The PI (while still a member) and the billing members, as they are when it is sent."""
    mailing_enqueue(
        template="subsidy_threshold",
        audience=SUBSIDY_AUDIENCE,
        objects={"grant": grant},
        organisation_id=grant.organisation_id,
        context={"percent": threshold, "grace_hours": settings.SUBSIDY_GRACE_HOURS},
    )


def grants_subsidy_check(*, now: datetime | None = None) -> dict[int, str]:
    """Every active grant, each in its own transaction."""
    outcome = {}
    for pk in Grant.objects.filter(status=G.ACTIVE).order_by("pk").values_list("pk", flat=True):
        try:
            outcome[pk] = grant_subsidy_check(grant_id=pk, now=now)
        except Exception:
            log.exception("subsidy check of grant %s failed", pk)
    return outcome
