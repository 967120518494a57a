"""What the dashboard shows beside the grants table: per grant a gauge of the subsidy, daily
utilisation and energy over the last 7 and 30 days, open notices and how to connect; for an
organisation's owners its totals and each grant's share; invoices waiting for payment.

Read-only. Built from the hourly usage rows (never raw GPU samples) in a fixed number of queries
whatever the number of grants, days or organisations: one grouped query per kind of fact.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from allocations.models import Grant, JupyterSession, NodeAccount, Notice
from allocations.services.usage import grants_with_usage
from allocations.services.usage_charts import DAYS, GrantPanel, daily_usage, day_labels, grant_panel, window
from billing.models import Invoice
from portal import charts
from portal.models import Membership

LOCAL_JUPYTER_PORT = 8888  # the same local port the grant page suggests
MAX_OWNED_GRANTS = 50


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
    daily = daily_usage(ids, first) if ids else {}
    notices: dict[int, list[Notice]] = defaultdict(list)
    if ids:
        for notice in Notice.objects.filter(grant_id__in=ids, kind=Notice.Kind.IDLE, resolved_at__isnull=True):
            notices[notice.grant_id].append(notice)
    connect = _connect(user, grants)
    dates = [first + timedelta(days=n) for n in range(DAYS)]
    labels, short_dates = day_labels(dates) if grant_rows else ({}, {})
    panels = []
    for row in grant_rows:
        grant = row["grant"]
        panel = grant_panel(row, window(daily.get(grant.pk, {}), first), labels, short_dates)
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
