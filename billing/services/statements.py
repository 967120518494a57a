"""What the ledger needs, read from the database: access intervals, rates, prepaid hours left.
Read-only; the invoice run and the "so far this month" pages both price usage through here."""

from __future__ import annotations

from datetime import date, datetime

from django.db.models import Exists, OuterRef, Q, Sum

from allocations.models import AccessInterval, Grant
from billing import ledger
from billing.models import HourPack, Invoice, InvoiceLine, Rate
from portal.models import Organisation

EPOCH = datetime(2000, 1, 1, tzinfo=ledger.SEOUL)


def _overlapping(start: datetime, end: datetime) -> Q:
    return Q(opened_at__lt=end) & (Q(closed_at__isnull=True) | Q(closed_at__gt=start))


def organisations_with_usage(start: datetime, end: datetime):
    """Organisations that had access to GPUs at some moment of [start, end), by id."""
    used = AccessInterval.objects.filter(_overlapping(start, end), grant__organisation=OuterRef("pk"))
    return Organisation.objects.filter(Exists(used)).order_by("pk")


def rates_for(tier: str, gpu_models: set[str]) -> dict[str, list[tuple[date, int]]]:
    rates: dict[str, list[tuple[date, int]]] = {}
    rows = Rate.objects.filter(price_tier=tier, gpu_model__in=gpu_models).order_by("effective_from")
    for r in rows:
        rates.setdefault(r.gpu_model_id, []).append((r.effective_from, r.krw_per_gpu_hour))
    return rates


def packs_left(organisation_id: int, *, before: date, until: datetime) -> list[ledger.Pack]:
    """The organisation's packs paid before `until`, each with the GPU-minutes left once the
    invoices of every month other than `before` (the month being priced) have drawn on it (void
    invoices drew nothing). Later months count too: a month invoiced after a later one (its run
    failed for a missing rate and was rerun) gets only what the later month left, never the same
    hours twice. Prepaid lines written before lines named their pack are taken from the oldest
    packs first."""
    paid = list(
        HourPack.objects.filter(organisation_id=organisation_id, status=HourPack.Status.PAID, paid_at__lt=until)
        .order_by("paid_at", "pk")
        .values_list("pk", "gpu_model", "paid_at", "gpu_hours")
    )
    if not paid:
        return []
    drawn = (
        InvoiceLine.objects.filter(invoice__organisation_id=organisation_id, kind=InvoiceLine.Kind.PREPAID)
        .exclude(invoice__month=before)
        .exclude(invoice__status=Invoice.Status.VOID)
        .values_list("hour_pack", "gpu_model")
        .annotate(m=Sum("gpu_minutes"))
        .order_by()
    )
    by_pack: dict[int, int] = {}
    unassigned: dict[str, int] = {}
    for pack_id, model, minutes in drawn:
        if pack_id is None:
            unassigned[model] = unassigned.get(model, 0) + minutes
        else:
            by_pack[pack_id] = by_pack.get(pack_id, 0) + minutes
    packs = []
    for pk, model, paid_at, hours in paid:
        left = hours * 60 - by_pack.get(pk, 0)
        legacy = min(max(left, 0), unassigned.get(model, 0))
        unassigned[model] = unassigned.get(model, 0) - legacy
        packs.append(ledger.Pack(pk, model, paid_at, left - legacy))
    return packs


def pack_minutes_left(organisation_id: int, *, before: date, until: datetime) -> dict[str, int]:
    """Prepaid GPU-minutes left per GPU model (see `packs_left`)."""
    left: dict[str, int] = {}
    for pack in packs_left(organisation_id, before=before, until=until):
        left[pack.gpu_model] = left.get(pack.gpu_model, 0) + max(pack.minutes_left, 0)
    return left


def grant_usage(grant: Grant, intervals: list, start: datetime) -> ledger.GrantUsage:
    return ledger.GrantUsage(
        grant_id=grant.pk,
        gpu_model=grant.gpu_model_id,
        copay_percent=grant.copay_percent,
        subsidy_minutes=grant.gpu_hours * 60,
        used_before_minutes=sum(i.gpu_minutes(EPOCH, start) for i in intervals),
        intervals=tuple(ledger.Interval(i.opened_at, i.closed_at, i.gpu_count) for i in intervals),
    )


def organisation_statement(*, organisation: Organisation, start: datetime, end: datetime) -> ledger.Statement:
    """The organisation's ledger lines for [start, end) (a month, or the month so far)."""
    grants = list(
        Grant.objects.filter(organisation=organisation)
        .filter(Exists(AccessInterval.objects.filter(_overlapping(start, end), grant=OuterRef("pk"))))
        .order_by("pk")
    )
    intervals: dict[int, list] = {}
    for i in AccessInterval.objects.filter(grant__in=grants, opened_at__lt=end).order_by("opened_at"):
        intervals.setdefault(i.grant_id, []).append(i)
    usages = [grant_usage(g, intervals.get(g.pk, []), start) for g in grants]
    rates = rates_for(organisation.price_tier, {g.gpu_model_id for g in grants})
    month = start.astimezone(ledger.SEOUL).date().replace(day=1)
    packs = packs_left(organisation.pk, before=month, until=end)
    return ledger.statement(grants=usages, rates=rates, packs=packs, start=start, end=end)


def grants_statement(
    *, organisation: Organisation, grants: list[Grant], start: datetime, end: datetime
) -> ledger.Statement:
    """The lines of `grants` (of `organisation`, with `access_intervals` prefetched) for [start,
    end), equal to their lines in `organisation_statement`, without pricing the organisation's
    other grants (the dashboard of a member of a large organisation, issue 13). A grant's lines
    depend on its own intervals, subsidy and rates, except for prepaid hours, which the
    organisation's grants of one GPU model draw in the order time was used: for a model with
    prepaid minutes left, the whole organisation is priced and these grants' lines kept."""
    priced = [g for g in grants if any(_overlaps(i, start, end) for i in g.access_intervals.all())]
    if not priced:  # no access in the period: no lines, whatever the packs
        return ledger.Statement()
    month = start.astimezone(ledger.SEOUL).date().replace(day=1)
    models = {g.gpu_model_id for g in priced}
    packs = [p for p in packs_left(organisation.pk, before=month, until=end) if p.gpu_model in models]
    if any(p.minutes_left > 0 for p in packs):
        ids = {g.pk for g in grants}
        whole = organisation_statement(organisation=organisation, start=start, end=end)
        return ledger.Statement([line for line in whole.lines if line.grant_id in ids])
    usages = []
    for g in priced:
        intervals = sorted((i for i in g.access_intervals.all() if i.opened_at < end), key=lambda i: i.opened_at)
        usages.append(grant_usage(g, intervals, start))
    rates = rates_for(organisation.price_tier, models)
    return ledger.statement(grants=usages, rates=rates, packs=packs, start=start, end=end)


def _overlaps(interval: AccessInterval, start: datetime, end: datetime) -> bool:
    """In Python what `_overlapping` says in SQL."""
    return interval.opened_at < end and (interval.closed_at is None or interval.closed_at > start)


def grant_subsidy_used_minutes(grant: Grant, *, until: datetime) -> int:
    """GPU-minutes the grant has used up to `until`, all drawn from its subsidy first."""
    return sum(i.gpu_minutes(EPOCH, until) for i in grant.access_intervals.all())
