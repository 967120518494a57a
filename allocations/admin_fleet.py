"""The operators' fleet page in the admin (`/admin/fleet/`, linked from the admin index): nodes by
status, GPUs free / assigned / idle per model, failing provisioning tasks, silent nodes."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from allocations.services.fleet import Fleet, fleet_overview
from portal import charts


def capacity_chart(fleet: Fleet):
    rows = [
        (
            m.model,
            [
                charts.Segment(_("assigned, in use"), m.assigned - m.idle, charts.ACCENT),
                charts.Segment(_("assigned, idle"), m.idle, charts.USED),
                charts.Segment(_("free"), m.free, charts.RECENT),
                charts.Segment(_("unavailable"), m.unavailable, "#8c959f"),
            ],
        )
        for m in fleet.models
    ]
    total = sum(m.total for m in fleet.models)
    free = sum(m.free for m in fleet.models)
    return charts.stacked_bars(
        chart_id="fleet-capacity",
        rows=rows,
        title=_("GPUs per model"),
        desc=_("%(free)s of %(total)s GPUs are free; the table below gives each model's numbers.")
        % {"free": charts.num(free), "total": charts.num(total)},
    )


def fleet_view(request: HttpRequest) -> HttpResponse:
    """For operators (those who may see nodes); everyone else in the admin is refused."""
    if not request.user.has_perm("allocations.view_node"):
        raise PermissionDenied
    fleet = fleet_overview()
    context = {
        **admin.site.each_context(request),
        "title": _("Fleet"),
        "fleet": fleet,
        "chart": capacity_chart(fleet) if fleet.models else "",
    }
    return TemplateResponse(request, "admin/allocations/fleet.html", context)
