"""The billing rule as a pure function (no database): a month's GPU-minutes of each grant, from its
access intervals, drawn in order from the grant's subsidised hours (charged at the co-payment
percent of the published rate), the organisation's prepaid hour packs (no charge), then billable
hours at the published rate of the organisation's price tier.

Time is drawn in the order it was used, across all the organisation's grants: the month is cut
into pieces at every rate change, every pack's purchase and (when packs are left) every start and
end of an access interval, and the pieces are drawn in time order (grant id order within a piece
shared by several grants). Packs are consumed oldest first; a pack covers only time after its
purchase.

A rate that changes inside the month splits the time at its effective instant (00:00 Seoul of its
effective date). Minutes are counted like `AccessInterval.gpu_minutes` (whole minutes of each
interval inside the month) and split by telescoping from the interval's start in the month, so
the pieces always add up to the interval's minutes. Amounts are Decimal, rounded half-up to whole
won once per line.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")
SUBSIDISED, PREPAID, BILLABLE = "subsidised", "prepaid", "billable"


class LedgerError(Exception):
    """Usage that cannot be priced (no published rate for the GPU model and tier at that time)."""


def won(value: Decimal) -> int:
    """Whole won, half-up (₩0.5 → ₩1)."""
    return int(value.quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def vat_of(supply_krw: int, percent: int) -> int:
    return won(Decimal(supply_krw) * percent / 100)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) of a calendar month in Seoul time."""
    start = datetime.combine(month.replace(day=1), time(0), tzinfo=SEOUL)
    nxt = (month.replace(day=1) + timedelta(days=32)).replace(day=1)
    return start, datetime.combine(nxt, time(0), tzinfo=SEOUL)


@dataclass(frozen=True)
class Interval:
    opened_at: datetime
    closed_at: datetime | None
    gpu_count: int


@dataclass(frozen=True)
class GrantUsage:
    grant_id: int
    gpu_model: str
    copay_percent: int
    subsidy_minutes: int  # the grant's subsidised GPU-hours x 60
    used_before_minutes: int  # GPU-minutes used before the period (drawn from the subsidy first)
    intervals: tuple[Interval, ...]


@dataclass(frozen=True)
class Pack:
    """A paid hour pack: GPU-minutes left at the start of the period, usable from `paid_at` on."""

    pack_id: int
    gpu_model: str
    paid_at: datetime
    minutes_left: int


@dataclass
class Line:
    grant_id: int
    kind: str
    gpu_model: str
    period_start: datetime
    period_end: datetime
    krw_per_gpu_hour: int
    percent: int
    gpu_minutes: int = 0
    pack_id: int | None = None  # the pack a prepaid line drew from

    @property
    def amount_krw(self) -> int:
        return won(Decimal(self.gpu_minutes) * self.krw_per_gpu_hour * self.percent / Decimal(6000))


@dataclass
class Statement:
    lines: list[Line] = field(default_factory=list)

    @property
    def supply_krw(self) -> int:
        return sum(line.amount_krw for line in self.lines)

    def prepaid_minutes(self, gpu_model: str) -> int:
        return sum(x.gpu_minutes for x in self.lines if x.kind == PREPAID and x.gpu_model == gpu_model)


def _rate_at(rates: list[tuple[date, int]], instant: datetime, gpu_model: str) -> tuple[date, int]:
    day = instant.astimezone(SEOUL).date()
    found = [r for r in rates if r[0] <= day]
    if not found:
        raise LedgerError(f"no published rate for {gpu_model} on {day}")
    return found[-1]


def _instant(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=SEOUL)


def _pieces(iv: Interval, start: datetime, end: datetime, cuts: list[datetime], rates, gpu_model: str):
    """(piece start, piece end, GPU-minutes, (effective date, rate)) of one interval inside
    [start, end), cut at the sorted instants `cuts`. Minutes telescope from the interval's start
    in the period, so the pieces add up to the interval's whole minutes."""
    lower = max(iv.opened_at, start)
    upper = min(iv.closed_at or end, end)
    if upper <= lower:
        return
    inside = [c for c in cuts[bisect_right(cuts, lower) :] if c < upper]
    points = [lower, *inside, upper]

    def minutes_to(t: datetime) -> int:
        return int((t - lower).total_seconds() // 60) * iv.gpu_count

    for a, b in pairwise(points):
        yield a, b, minutes_to(b) - minutes_to(a), _rate_at(rates, a, gpu_model)


def _cuts(grants: list[GrantUsage], rates: dict, packs: list[Pack], start: datetime, end: datetime) -> dict:
    """Per GPU model, the sorted instants where drawing can change: rate changes, pack purchases
    and, when the model has packs left to share, every interval's start and end (so concurrent
    grants draw a pack minute by minute in time order, not one interval after the other)."""
    cuts: dict[str, set[datetime]] = {}
    for model in {g.gpu_model for g in grants}:
        points = {_instant(day) for day, _krw in rates.get(model, [])}
        model_packs = [p for p in packs if p.gpu_model == model and p.minutes_left > 0]
        points |= {p.paid_at for p in model_packs}
        if model_packs:
            for g in grants:
                if g.gpu_model == model:
                    points |= {t for iv in g.intervals for t in (iv.opened_at, iv.closed_at) if t is not None}
        cuts[model] = {t for t in points if start < t < end}
    return {model: sorted(points) for model, points in cuts.items()}


def statement(
    *,
    grants: list[GrantUsage],
    rates: dict[str, list[tuple[date, int]]],
    packs: list[Pack],
    start: datetime,
    end: datetime,
) -> Statement:
    """The lines of one organisation for [start, end). `rates` holds, per GPU model, the
    organisation tier's (effective date, KRW per GPU-hour) sorted by date; `packs` the paid
    packs with what was left of each at `start`."""
    rates = {model: sorted(r) for model, r in rates.items()}
    cuts = _cuts(grants, rates, packs, start, end)
    pieces = []
    for usage in grants:
        for iv in usage.intervals:
            model_rates = rates.get(usage.gpu_model, [])
            for a, b, minutes, rate in _pieces(iv, start, end, cuts[usage.gpu_model], model_rates, usage.gpu_model):
                pieces.append((a, usage.grant_id, b, minutes, rate, usage))
    pieces.sort(key=lambda p: (p[0], p[1]))
    subsidy_left = {g.grant_id: max(g.subsidy_minutes - g.used_before_minutes, 0) for g in grants}
    pack_left = {p.pack_id: p.minutes_left for p in packs}
    oldest_first = sorted(packs, key=lambda p: (p.paid_at, p.pack_id))
    lines: dict[tuple, Line] = {}

    def add(usage: GrantUsage, kind: str, a, b, effective, krw, percent, minutes, pack_id=None) -> None:
        key = (usage.grant_id, kind, effective, pack_id)
        line = lines.get(key)
        if line is None:
            line = lines[key] = Line(usage.grant_id, kind, usage.gpu_model, a, b, krw, percent, pack_id=pack_id)
        line.period_start, line.period_end = min(line.period_start, a), max(line.period_end, b)
        line.gpu_minutes += minutes

    for a, grant_id, b, minutes, (effective, krw), usage in pieces:
        take = min(minutes, subsidy_left[grant_id])
        subsidy_left[grant_id] -= take
        if take:
            add(usage, SUBSIDISED, a, b, effective, krw, usage.copay_percent, take)
        rest = minutes - take
        for pack in oldest_first:
            if rest <= 0:
                break
            if pack.gpu_model != usage.gpu_model or pack.paid_at > a or pack_left[pack.pack_id] <= 0:
                continue
            take = min(rest, pack_left[pack.pack_id])
            pack_left[pack.pack_id] -= take
            rest -= take
            add(usage, PREPAID, a, b, effective, krw, 0, take, pack.pack_id)
        if rest > 0:
            add(usage, BILLABLE, a, b, effective, krw, 100, rest)
    order = {SUBSIDISED: 0, PREPAID: 1, BILLABLE: 2}
    # A stable sort: prepaid lines of one piece keep the order they were drawn in (oldest pack first).
    return Statement(sorted(lines.values(), key=lambda x: (x.grant_id, x.period_start, order[x.kind])))
