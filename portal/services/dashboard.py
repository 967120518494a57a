"""What the dashboard shows beside the grants table: per grant a gauge of the subsidy, daily
utilisation and energy over the last 7 and 30 days, open notices and how to connect; for an
organisation's owners its totals and each grant's share; invoices waiting for payment.

Read-only. Built from the hourly usage rows (never raw GPU samples) in a fixed number of queries
whatever the number of grants, days or organisations: one grouped query per kind of fact.
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

from allocations.models import Grant, JupyterSession, NodeAccount, Notice, UsageHour
from allocations.services.usage import grants_with_usage
from billing.models import Invoice
from portal import charts
from portal.models import Membership

DAYS = 30
RECENT_DAYS = 7
LOCAL_JUPYTER_PORT = 8888  # the same local port the grant page suggests
MAX_OWNED_GRANTS = 50


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


@dataclass
class GrantShare:
    grant: Grant
    used_hours: float
    share_percent: float


@dataclass
class OrganisationTotals:
    organisation: object
    used_hours: float
    subsidy_hours: int
    energy_kwh: float
    shares: list[GrantShare]
    gauge: SafeString
    chart: SafeString


@dataclass
class Overview:
    panels: list[GrantPanel]
    organisations: list[OrganisationTotals]
    invoices_due: list[Invoice]

    @property
    def has_notices(self) -> bool:
        return bool(self.invoices_due) or any(p.notices for p in self.panels)


def _weighted(samples: int, weighted: float | None) -> float | None:
    return round((weighted or 0) / samples, 1) if samples else None


def _daily(grant_ids: list[int], first: date) -> dict[int, dict[date, Day]]:
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


def _connect(user, grants: list[Grant]) -> dict[int, tuple[str, str, str]]:
    """Active grant → (ssh command, Jupyter tunnel command, Jupyter state) for this user. Two
    queries: the user's accounts on the grants' nodes, and the user's Jupyter servers."""
    active = [g.pk for g in grants if g.status == Grant.Status.ACTIVE]
    if not active:
        return {}
    accounts = (
        NodeAccount.objects.filter(user=user, node__assignments__grant_id__in=active)
        .values_list("node__assignments__grant_id", "username", "node__address", "node__ssh_port")
        .distinct()
    )
    sessions = {
        s.grant_id: s
        for s in JupyterSession.objects.filter(grant_id__in=active, account__user=user).exclude(
            state=JupyterSession.State.STOPPED
        )
    }
    out = {}
    for grant_id, username, address, ssh_port in sorted(accounts):
        if grant_id in out:
            continue  # a grant lives on one node; should it span two, the first one is shown
        port = f" -p {ssh_port}" if ssh_port != 22 else ""
        target = f"{username}@{address}"
        session = sessions.get(grant_id)
        tunnel = (
            f"ssh -N -L {LOCAL_JUPYTER_PORT}:{session.socket_path}{port} {target}"
            if session and session.socket_path
            else ""
        )
        out[grant_id] = (f"ssh{port} {target}", tunnel, session.get_state_display() if session else "")
    return out


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


def _panel(row: dict, days: list[Day], labels: dict[date, str], short_dates: dict[date, str]) -> GrantPanel:
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


def _owned(owned: list[int]) -> list[OrganisationTotals]:
    """The organisations the user owns (`owned`: their ids, from the memberships read in this
    request): their grants' use, totals and each grant's share (one query for every owned
    organisation's grants)."""
    # The newest grants first, chosen before the usage sums so that only they are summed.
    newest = Grant.objects.filter(organisation_id__in=owned).order_by("-created_at").values("pk")[:MAX_OWNED_GRANTS]
    rows = grants_with_usage(
        Grant.objects.filter(pk__in=newest)
        .select_related("organisation", "application")
        .order_by("organisation_id", "-created_at"),
        limit=MAX_OWNED_GRANTS,
    )
    by_org: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_org[row["grant"].organisation_id].append(row)
    out = []
    for org_rows in by_org.values():
        organisation = org_rows[0]["grant"].organisation
        used = round(sum(r["gpu_hours_used"] for r in org_rows), 1)
        subsidy = sum(r["gpu_hours_subsidy"] for r in org_rows)
        shares = [
            GrantShare(r["grant"], r["gpu_hours_used"], round(100 * r["gpu_hours_used"] / used, 1) if used else 0.0)
            for r in org_rows
        ]
        out.append(
            OrganisationTotals(
                organisation=organisation,
                used_hours=used,
                subsidy_hours=subsidy,
                energy_kwh=round(sum(r["energy_kwh"] for r in org_rows), 2),
                shares=shares,
                gauge=charts.gauge(
                    chart_id=f"org-{organisation.pk}-subsidy",
                    used=used,
                    total=subsidy,
                    title=_("The organisation's GPU-hours"),
                    desc=_("%(used)s of %(total)s awarded GPU-hours used by all of the organisation's grants.")
                    % {"used": charts.num(used, 1), "total": charts.num(subsidy)},
                ),
                chart=charts.awarded_vs_used(
                    org_rows,
                    chart_id=f"org-{organisation.pk}-grants",
                    title=_("GPU-hours used and awarded per grant"),
                    desc=_("For each of the organisation's grants, the GPU-hours used against those awarded."),
                ),
            )
        )
    return out


def _roles(user, memberships: list[Membership] | None) -> dict[int, str]:
    """Organisation id → the user's role there now: from the memberships the request has just
    read (the dashboard reads them first), or read here."""
    if memberships is None:
        memberships = list(Membership.objects.filter(user=user).only("organisation_id", "role"))
    return {m.organisation_id: m.role for m in memberships}


def dashboard_overview(
    *, user, grant_rows: list[dict], memberships: list[Membership] | None = None, today: date | None = None
) -> Overview:
    """Charts, notices and connection commands for the grants in `grant_rows` (the dashboard's
    rows from `grants_with_usage`, each with its `month`), plus what an owner or billing
    member must know about their organisations. The number of queries does not grow with the
    number of grants, days or organisations. `memberships`: the user's current memberships as
    read at the start of this request (what owners and billing members see follows them); a
    user who owns no organisation and pays for none costs no query for those parts."""
    today = today or timezone.localdate()
    first = today - timedelta(days=DAYS - 1)
    grants = [row["grant"] for row in grant_rows]
    ids = [g.pk for g in grants]
    daily = _daily(ids, first) if ids else {}
    notices: dict[int, list[Notice]] = defaultdict(list)
    if ids:
        for notice in Notice.objects.filter(grant_id__in=ids, kind=Notice.Kind.IDLE, resolved_at__isnull=True):
            notices[notice.grant_id].append(notice)
    connect = _connect(user, grants)
    dates = [first + timedelta(days=n) for n in range(DAYS)]
    # Once per request, not per grant and chart.
    labels = {d: charts.day_label(d) for d in dates} if grant_rows else {}
    short_dates = {d: date_format(d, "SHORT_DATE_FORMAT") for d in dates} if grant_rows else {}
    panels = []
    for row in grant_rows:
        grant = row["grant"]
        known = daily.get(grant.pk, {})
        days = [known.get(d) or Day(d) for d in dates]
        panel = _panel(row, days, labels, short_dates)
        panel.notices = notices.get(grant.pk, [])
        panel.ssh_command, panel.tunnel_command, panel.jupyter_state = connect.get(grant.pk, ("", "", ""))
        panels.append(panel)
    roles = _roles(user, memberships)
    owned = [org for org, role in roles.items() if role == Membership.Role.OWNER]
    payers = [org for org, role in roles.items() if role in {Membership.Role.OWNER, Membership.Role.BILLING}]
    invoices_due = (
        list(
            Invoice.objects.filter(organisation_id__in=payers, status=Invoice.Status.OPEN)
            .select_related("organisation")
            .order_by("due_on")[:20]
        )
        if payers
        else []
    )
    return Overview(panels=panels, organisations=_owned(owned) if owned else [], invoices_due=invoices_due)
