"""Cost before commitment: what an application or an award will cost at the published rate, and
what a running grant has used and costs this month. Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db.models import prefetch_related_objects
from django.utils import timezone

from allocations.models import Grant
from billing import ledger
from billing.models import Rate
from billing.services.statements import grant_subsidy_used_minutes, grants_statement


@dataclass(frozen=True)
class Estimate:
    """The subsidy's value at the published rate, the co-payment, and VAT on the co-payment."""

    krw_per_gpu_hour: int
    gpu_hours: int
    copay_percent: int
    subsidy_value_krw: int
    copay_krw: int
    vat_krw: int

    @property
    def total_krw(self) -> int:
        return self.copay_krw + self.vat_krw


def rate_on(gpu_model: str, tier: str, on: date | None = None) -> int | None:
    rate = Rate.objects.in_effect(on).filter(gpu_model=gpu_model, price_tier=tier).first()
    return rate.krw_per_gpu_hour if rate else None


def estimate(*, krw_per_gpu_hour: int, gpu_hours: int, copay_percent: int) -> Estimate:
    """Rounded half-up to whole won like an invoice line; the JavaScript preview does the same sum."""
    value = gpu_hours * krw_per_gpu_hour
    copay = ledger.won(Decimal(value) * copay_percent / 100)
    return Estimate(
        krw_per_gpu_hour,
        gpu_hours,
        copay_percent,
        value,
        copay,
        ledger.vat_of(copay, settings.VAT_PERCENT),
    )


def request_estimate(*, gpu_model: str, tier: str, gpu_hours: int | None, copay_percent: int) -> Estimate | None:
    rate = rate_on(gpu_model, tier) if gpu_model and gpu_hours else None
    if rate is None:
        return None
    return estimate(krw_per_gpu_hour=rate, gpu_hours=gpu_hours, copay_percent=copay_percent)


@dataclass(frozen=True)
class GrantMonth:
    used_hours: Decimal
    left_hours: Decimal
    accrued_krw: int  # this month so far, before VAT
    estimate_krw: int  # the whole month at the pace so far, before VAT


def grant_month(grant: Grant, *, statement: ledger.Statement | None = None, now=None) -> GrantMonth | None:
    """Subsidised hours used and left, and this month's charges so far and at this pace.
    None when the month's use cannot be priced (no rate)."""
    now = now or timezone.now()
    if statement is None:  # priced for this grant alone (grants_statement)
        prefetch_related_objects([grant], "access_intervals")
        return grants_month([grant], now=now)[grant.pk]
    used = grant_subsidy_used_minutes(grant, until=now)
    start, end = ledger.month_bounds(timezone.localdate(now))
    accrued = sum(x.amount_krw for x in statement.lines if x.grant_id == grant.pk)
    elapsed = (now - start).total_seconds()
    pace = ledger.won(Decimal(accrued) * Decimal((end - start).total_seconds()) / Decimal(elapsed)) if elapsed else 0
    hours = Decimal(used) / 60
    return GrantMonth(
        used_hours=hours.quantize(Decimal("0.1")),
        left_hours=max(Decimal(grant.gpu_hours) - hours, Decimal(0)).quantize(Decimal("0.1")),
        accrued_krw=accrued,
        estimate_krw=pace,
    )


def grants_month(grants: list[Grant], *, now=None) -> dict[int, GrantMonth | None]:
    """`grant_month` for a page of grants: one ledger statement per organisation, not per grant,
    priced for these grants only (`grants_statement`; prefetch the grants' `access_intervals` and
    select their `organisation`)."""
    now = now or timezone.now()
    start, _end = ledger.month_bounds(timezone.localdate(now))
    statements: dict[int, ledger.Statement | None] = {}
    months = {}
    for grant in grants:
        if grant.organisation_id not in statements:
            mine = [g for g in grants if g.organisation_id == grant.organisation_id]
            try:
                statements[grant.organisation_id] = grants_statement(
                    organisation=grant.organisation, grants=mine, start=start, end=now
                )
            except ledger.LedgerError:
                statements[grant.organisation_id] = None
        statement = statements[grant.organisation_id]
        months[grant.pk] = None if statement is None else grant_month(grant, statement=statement, now=now)
    return months
