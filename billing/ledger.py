"""The billing rule as a pure function (no database): a month's GPU-minutes of each grant, from its
access intervals, drawn in order from the grant's subsidised hours (charged at the co-payment
percent of the published rate), the organisation's prepaid hour packs (no charge), then billable
hours at the published rate of the organisation's price tier.

A rate that changes inside the month splits the time at its effective instant (00:00 Seoul of its
effective date). Minutes are counted like `AccessInterval.gpu_minutes` (whole minutes of each
interval inside the month) and split at rate changes by telescoping from the interval's start in
the month, so the pieces always add up to the interval's minutes. Amounts are Decimal, rounded
half-up to whole won once per line.
"""

from __future__ import annotations

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


def _pieces(iv: Interval, start: datetime, end: datetime, rates: list[tuple[date, int]], gpu_model: str):
    """(piece start, piece end, GPU-minutes, (effective date, rate)) of one interval inside [start, end)."""
    lower = max(iv.opened_at, start)
    upper = min(iv.closed_at or end, end)
    if upper <= lower:
        return
    cuts = [lower]
    for effective, _krw in rates:
        instant = datetime.combine(effective, time(0), tzinfo=SEOUL)
        if lower < instant < upper:
            cuts.append(instant)
    cuts.append(upper)

    def minutes_to(t: datetime) -> int:
        return int((t - lower).total_seconds() // 60) * iv.gpu_count

    for a, b in pairwise(cuts):
        yield a, b, minutes_to(b) - minutes_to(a), _rate_at(rates, a, gpu_model)


def statement(
    *,
    grants: list[GrantUsage],
    rates: dict[str, list[tuple[date, int]]],
    pack_minutes: dict[str, int],
    start: datetime,
    end: datetime,
) -> Statement:
    """The lines of one organisation for [start, end). `rates` holds, per GPU model, the
    organisation tier's (effective date, KRW per GPU-hour) sorted by date; `pack_minutes` the
    prepaid GPU-minutes left per GPU model at `start`. Grants draw on the packs in id order."""
    packs = dict(pack_minutes)
    lines: dict[tuple, Line] = {}
    for usage in sorted(grants, key=lambda g: g.grant_id):
        model_rates = sorted(rates.get(usage.gpu_model, []))
        subsidy_left = max(usage.subsidy_minutes - usage.used_before_minutes, 0)
        for iv in sorted(usage.intervals, key=lambda i: i.opened_at):
            for a, b, minutes, (effective, krw) in _pieces(iv, start, end, model_rates, usage.gpu_model):
                draws = []
                take = min(minutes, subsidy_left)
                subsidy_left -= take
                draws.append((SUBSIDISED, take, usage.copay_percent))
                rest = minutes - take
                take = min(rest, packs.get(usage.gpu_model, 0))
                packs[usage.gpu_model] = packs.get(usage.gpu_model, 0) - take
                draws.append((PREPAID, take, 0))
                draws.append((BILLABLE, rest - take, 100))
                for kind, taken, percent in draws:
                    if taken <= 0:
                        continue
                    key = (usage.grant_id, kind, effective)
                    line = lines.get(key)
                    if line is None:
                        line = lines[key] = Line(usage.grant_id, kind, usage.gpu_model, a, b, krw, percent)
                    line.period_start, line.period_end = min(line.period_start, a), max(line.period_end, b)
                    line.gpu_minutes += taken
    order = {SUBSIDISED: 0, PREPAID: 1, BILLABLE: 2}
    return Statement(sorted(lines.values(), key=lambda x: (x.grant_id, x.period_start, order[x.kind])))
