"""A grant's use drawn as charts: the subsidy gauge, utilisation per day over the last 7 and 30
days and energy per day. Shared by the dashboard (portal.services.dashboard, many grants) and
the grant page (allocations.views, one grant): the same numbers and the same SVG on both.

Built from the hourly usage rows (never raw GPU samples): `daily_usage` is one grouped query for
any number of grants; the charts themselves (portal.charts) never query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import F, FloatField, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from allocations.models import Grant, Notice, UsageHour
from portal import charts

DAYS = 30
RECENT_DAYS = 7


@dataclass
class Day:
    day: date
    gpu_hours: float = 0.0
    utilization: float | None = None
    energy_kwh: float = 0.0


@dataclass
class GrantPanel:
    grant: Grant
    used_hours: float
    subsidy_hours: int
    left_hours: float
    days: list[Day]
    util_7: float | None
    util_30: float | None
    energy_30_kwh: float
    gauge: SafeString
    chart_7: SafeString
    chart_30: SafeString
    energy_chart: SafeString
    day_rows: SafeString  # the table of the numbers per day (day_rows())
    notices: list[Notice] = field(default_factory=list)
    ssh_command: str = ""
    tunnel_command: str = ""
    jupyter_state: str = ""

    @property
    def recent_days(self) -> list[Day]:
        return self.days[-RECENT_DAYS:]


def _weighted(samples: int, weighted: float | None) -> float | None:
    return round((weighted or 0) / samples, 1) if samples else None


def daily_usage(grant_ids: list[int], first: date) -> dict[int, dict[date, Day]]:
    """Grant → local day → that day's GPU-hours, sample-weighted utilisation and energy."""
    zone = ZoneInfo(settings.TIME_ZONE)
    start = timezone.make_aware(datetime.combine(first, time()), zone)
    rows = (
        UsageHour.objects.filter(grant_id__in=grant_ids, hour__gte=start)
        .annotate(day=TruncDate("hour", tzinfo=zone))
        .values("grant_id", "day")
        .annotate(
            minutes=Sum("gpu_minutes"),
            samples=Sum("sample_count", filter=Q(avg_utilization__isnull=False)),
            weighted=Sum(F("avg_utilization") * F("sample_count"), output_field=FloatField()),
            wh=Sum("energy_wh"),
        )
    )
    out: dict[int, dict[date, Day]] = defaultdict(dict)
    for r in rows:
        out[r["grant_id"]][r["day"]] = Day(
            r["day"],
            round((r["minutes"] or 0) / 60, 1),
            _weighted(r["samples"] or 0, r["weighted"]),
            round((r["wh"] or 0) / 1000, 2),
        )
    return out


def _average(days: list[Day]) -> float | None:
    """The days' utilisation weighted by their GPU-hours (a day without use does not count)."""
    measured = [d for d in days if d.utilization is not None and d.gpu_hours]
    hours = sum(d.gpu_hours for d in measured)
    return round(sum(d.utilization * d.gpu_hours for d in measured) / hours, 1) if hours else None


def day_labels(days: list[date]) -> tuple[dict[date, str], dict[date, str]]:
    """The charts' day labels and the table's short dates, formatted once per request (not per
    grant and chart: formatting was most of the dashboard's chart CPU)."""
    return {d: charts.day_label(d) for d in days}, {d: date_format(d, "SHORT_DATE_FORMAT") for d in days}


def day_rows(days: list[Day], short_dates: dict[date, str]) -> SafeString:
    """The rows of the "numbers per day" table: what a template loop of `date` and three
    `floatformat` filters per day rendered (30 rows per grant: most of the dashboard's template
    CPU), the same HTML, written once here."""
    one, two = charts.floatformat_formatter(1), charts.floatformat_formatter(2)
    return mark_safe(  # noqa: S308 - the dates and numbers are formatted by Django and escaped
        "".join(
            f'<tr><th scope="row">{escape(short_dates[d.day])}</th><td>{escape(one(d.gpu_hours))}</td>'
            f"<td>{'–' if d.utilization is None else escape(one(d.utilization)) + '%'}</td>"
            f"<td>{escape(two(d.energy_kwh))} kWh</td></tr>"
            for d in days
        )
    )


def grant_panel(
    row: dict, days: list[Day], labels: dict[date, str] | None = None, short_dates: dict[date, str] | None = None
) -> GrantPanel:
    """The charts of one grant from its usage row (`grants_with_usage` / `grant_usage_summary`
    with `grant`, `gpu_hours_used` and optionally `month`) and its days (`window`), with the
    day labels of `day_labels` (made here when not given). No query."""
    if labels is None or short_dates is None:
        labels, short_dates = day_labels([d.day for d in days])
    grant = row["grant"]
    month = row.get("month")
    used = float(month.used_hours) if month else min(row["gpu_hours_used"], grant.gpu_hours)
    left = float(month.left_hours) if month else max(grant.gpu_hours - used, 0)
    recent = days[-RECENT_DAYS:]
    util_7, util_30 = _average(recent), _average(days)
    energy = round(sum(d.energy_kwh for d in days), 2)
    prefix = f"grant-{grant.pk}"
    points = [charts.Point(labels[d.day], d.utilization, i >= DAYS - RECENT_DAYS) for i, d in enumerate(days)]
    top_kwh = max([d.energy_kwh for d in days] or [0]) or 1
    return GrantPanel(
        grant=grant,
        used_hours=used,
        subsidy_hours=grant.gpu_hours,
        left_hours=left,
        days=days,
        util_7=util_7,
        util_30=util_30,
        energy_30_kwh=energy,
        gauge=charts.gauge(
            chart_id=f"{prefix}-subsidy",
            used=used,
            total=grant.gpu_hours,
            title=_("Subsidised GPU-hours"),
            desc=_("%(used)s of %(total)s subsidised GPU-hours used, %(left)s left.")
            % {"used": charts.num(used, 1), "total": charts.num(grant.gpu_hours), "left": charts.num(left, 1)},
        ),
        chart_7=charts.columns(
            chart_id=f"{prefix}-util-7",
            points=points[-RECENT_DAYS:],
            top=100,
            unit="%",
            title=_("GPU utilisation, last 7 days"),
            desc=_("Average utilisation of the grant's GPUs per day: %(avg)s%% over the last 7 days.")
            % {"avg": charts.num(util_7, 1)},
        ),
        chart_30=charts.columns(
            chart_id=f"{prefix}-util-30",
            points=points,
            top=100,
            unit="%",
            title=_("GPU utilisation, last 30 days"),
            desc=_("Average utilisation of the grant's GPUs per day: %(avg)s%% over the last 30 days.")
            % {"avg": charts.num(util_30, 1)},
        ),
        energy_chart=charts.columns(
            chart_id=f"{prefix}-energy",
            points=[charts.Point(labels[d.day], d.energy_kwh) for d in days],
            top=top_kwh,
            unit=" kWh",
            title=_("Energy per day, last 30 days"),
            desc=_("%(kwh)s kWh used by the grant's GPUs over the last 30 days.") % {"kwh": charts.num(energy, 2)},
        ),
        day_rows=day_rows(days, short_dates),
    )


def window(known: dict[date, Day], first: date) -> list[Day]:
    """DAYS consecutive days from `first`, a day without usage rows counting as empty."""
    return [known.get(first + timedelta(days=n)) or Day(first + timedelta(days=n)) for n in range(DAYS)]


def grant_usage_panel(*, grant: Grant, usage: dict, today: date | None = None) -> GrantPanel:
    """The grant page's charts: its last DAYS days of use (one query) drawn as on the dashboard.
    `usage` is `grant_usage_summary(grant)`."""
    first = (today or timezone.localdate()) - timedelta(days=DAYS - 1)
    known = daily_usage([grant.pk], first).get(grant.pk, {})
    return grant_panel({"grant": grant, **usage}, window(known, first))
