"""The grants in the operators' workplace: the list (sorted, counted and limited alone, joined
after its LIMIT), each grant's page with its assignments and status history, and the actions
provision / suspend / resume / revoke, which call the grant services (suspend and revoke after a
confirmation page). Registered by importing it at the bottom of `allocations/admin.py`."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from allocations import admin_confirm
from allocations.admin_confirm import confirmation_page, confirmed
from allocations.admin_gpu_models import GpuModelListFilter
from allocations.models import Assignment, Grant, GrantEvent
from allocations.services import grants as grant_services
from portal.admin_numbers import grouped_field
from portal.admin_scale import JoinAfterLimitChangeList, LatestRowsInline, ScaledAdmin, local_period
from portal.errors import PortalError


class GrantEventInline(LatestRowsInline):
    """The reasons the portal wrote read in the reader's language (`allocations.reasons`)."""

    model = GrantEvent
    related = ("actor",)
    fields = readonly_fields = ["created_at", "actor", "old_status", "new_status", "reason_text"]

    @admin.display(description=GrantEvent._meta.get_field("reason").verbose_name)
    def reason_text(self, obj: GrantEvent) -> str:
        return obj.reason_text

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AssignmentInline(LatestRowsInline):
    model = Assignment
    related = ("node", "gpu__node")
    fields = readonly_fields = ["node", "gpu", "period_shown"]

    @admin.display(description=Assignment._meta.get_field("period").verbose_name)
    def period_shown(self, obj: Assignment) -> str:
        """Seoul time with the zone, as the admin writes every time."""
        return local_period(obj.period)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class GrantChangeList(JoinAfterLimitChangeList):
    """The grants are sorted, counted and limited alone (with the conflict-of-interest rule of
    `GrantAdmin.get_queryset`); the page's 50 rows are joined to their organisation, application
    and principal investigator afterwards."""

    related = ("organisation", "application__principal_investigator")


@admin.register(Grant)
class GrantAdmin(ScaledAdmin):
    list_display = ["id", "title", "principal_investigator", "organisation", "node", "gpus", "status", "period"]
    list_filter = ["status", GpuModelListFilter]
    # Joined for the change page; the list joins them after its LIMIT (GrantChangeList). The node
    # is a subquery, run for the page's rows only.
    list_select_related = ["organisation", "application__principal_investigator"]
    search_fields = ["organisation__name_en", "organisation__name_ko", "application__title"]
    inlines = [AssignmentInline, GrantEventInline]
    exclude = ["status_reason"]  # shown as status_reason_text
    actions = ["provision", "suspend", "resume", "revoke"]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # The status reason is shown in the reader's language where the portal wrote it.
        shown = {"status_reason": "status_reason_text", "gpu_hours": "gpu_hours_shown"}
        return [shown.get(f.name, f.name) for f in Grant._meta.fields]

    def get_fields(self, request, obj=None) -> list[str]:
        # Nothing editable: a grant changes through its services (approval, the actions), each
        # recorded. The fields shown in another form above would otherwise become inputs.
        return self.get_readonly_fields(request, obj)

    gpu_hours_shown = grouped_field(Grant, "gpu_hours")

    @admin.display(description=Grant._meta.get_field("status_reason").verbose_name)
    def status_reason_text(self, obj: Grant) -> str:
        return obj.status_reason_text

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[GrantChangeList]:
        return GrantChangeList

    def get_queryset(self, request):
        """The conflict-of-interest rule of the review queue holds for grants too: staff who
        belong (or belonged) to the organisation neither see nor act on its grants (404)."""
        from portal.models import Application

        node = Assignment.objects.filter(grant=OuterRef("pk")).order_by("-pk").values("node__hostname")[:1]
        return (
            super()
            .get_queryset(request)
            .filter(application__in=Application.objects.reviewable_by(request.user))
            .select_related("gpu_model", *self.list_select_related)  # the change page shows the model's name
            .annotate(node_hostname=Subquery(node))
        )

    @admin.display(description=_("title"), ordering="application__title")
    def title(self, obj: Grant) -> str:
        return Truncator(obj.application.title).chars(60)  # the other columns stay on a 1400 px screen

    @admin.display(description=_("principal investigator"), ordering="application__principal_investigator__email")
    def principal_investigator(self, obj: Grant) -> str:
        return obj.application.principal_investigator.email

    @admin.display(description=_("node"), ordering="node_hostname")
    def node(self, obj: Grant) -> str:
        return obj.node_hostname or "—"

    @admin.display(description=_("GPUs"), ordering="gpu_count")
    def gpus(self, obj: Grant) -> str:
        return f"{obj.gpu_count}× {obj.gpu_model_id}"

    @admin.display(description=_("period"), ordering="starts_on")
    def period(self, obj: Grant) -> str:
        return f"{obj.starts_on:%Y-%m-%d} – {obj.ends_on:%Y-%m-%d}"

    def has_add_permission(self, request) -> bool:
        return False  # grants are created by approving an application

    def has_change_permission(self, request, obj=None) -> bool:
        """`change_grant` allows the list's actions (suspend, resume, revoke, provision), which
        call the services; a grant's own page is Django's view-only page ("View grant", a Close
        button and no save buttons, a POST refused), since nothing on it is an input."""
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a deleted grant would leave its accounts and GPUs behind: revoke it

    def _each(self, request, queryset, action, **kwargs) -> list[str]:
        done = []
        for grant in queryset:
            try:
                action(grant=grant, **kwargs)
            except PortalError as exc:
                self.message_user(request, f"#{grant.pk}: {exc.message}", messages.ERROR)
            else:
                done.append(f"#{grant.pk}")
        return done

    def _end(self, request, queryset, *, action: str, status: str, service, reason: str, title, button, done_message):
        """Suspend or revoke after a confirmation page that lists each grant, the members who
        lose access and the nodes."""
        queryset = queryset.select_related("application", "organisation")
        if not confirmed(request):
            return confirmation_page(
                self, request, action=action, title=title, button=button,
                intro=_("The members listed lose their SSH and Jupyter access at once."),
                rows=[admin_confirm.grant_consequences(grant, new_status=status) for grant in queryset],
                selected=[grant.pk for grant in queryset],
            )  # fmt: skip
        done = self._each(request, queryset, service, actor=request.user, reason=reason)
        if done:
            self.message_user(request, done_message % {"grants": ", ".join(done)})
        return None

    @admin.action(description=_("Place and provision now"), permissions=["change"])
    def provision(self, request, queryset) -> None:
        self._each(request, queryset.filter(status=Grant.Status.PENDING), grant_services.grant_provision)

    @admin.action(description=_("Suspend (remove access, keep GPUs)"), permissions=["change"])
    def suspend(self, request, queryset) -> HttpResponse | None:
        return self._end(
            request, queryset, action="suspend", status=Grant.Status.SUSPENDED,
            service=grant_services.grant_suspend, reason="suspended by staff",
            title=_("Suspend these grants?"), button=_("Yes, suspend"),
            done_message=_("Suspended: %(grants)s. Their members' access is being removed; the GPUs stay reserved."),
        )  # fmt: skip

    @admin.action(description=_("Resume"), permissions=["change"])
    def resume(self, request, queryset) -> None:
        self._each(
            request, queryset.filter(status=Grant.Status.SUSPENDED), grant_services.grant_resume, actor=request.user
        )

    @admin.action(description=_("Revoke (remove access, free GPUs)"), permissions=["change"])
    def revoke(self, request, queryset) -> HttpResponse | None:
        return self._end(
            request, queryset, action="revoke", status=Grant.Status.REVOKED,
            service=grant_services.grant_revoke, reason="revoked by staff",
            title=_("Revoke these grants?"), button=_("Yes, revoke"),
            done_message=_("Revoked: %(grants)s. Their members' access is being removed and the GPUs are freed."),
        )  # fmt: skip
