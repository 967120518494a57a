"""Operators' workplace: nodes (status actions and history; host keys, inventory and reconcile
as queued node operations, never SSH inside a request), provisioning tasks with their errors and
a retry. Grants with suspend / resume / revoke are in `admin_grants`, metering in
`admin_metering`: both registered by the import at the bottom of this module."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations import admin_confirm
from allocations.admin_confirm import confirmation_page, confirmed
from allocations.admin_gpu_models import GpuModelChoiceField, GpuModelListFilter
from allocations.models import (
    Gpu,
    JupyterSession,
    Node,
    NodeAccount,
    NodeAccountEvent,
    NodeEvent,
    NodeOperation,
    ProvisioningTask,
    SshKey,
)
from allocations.services.enqueue import enqueue_node
from allocations.services.keys import sshkey_remove
from allocations.services.node_operations import node_operation_latest, node_operation_queue, node_pin_fetched_key
from allocations.services.node_status import node_set_status
from allocations.services.provisioning import task_retry
from allocations.services.sample_tokens import node_samples_token_revoke, node_samples_token_rotate
from portal.admin_numbers import grouped_field
from portal.admin_progress import ProgressAdminMixin
from portal.admin_scale import LatestRowsInline, ScaledAdmin
from portal.errors import PortalError
from portal.progress import elapsed_text, stalled_note


class HiddenFieldLookupsMixin:
    """Refuse changelist lookups on fields the admin hides (`?payload__token=`,
    `?token_nonce__startswith=`): a hidden field must not be readable through the URL, one
    guessed character at a time."""

    hidden_lookup_fields: frozenset[str] = frozenset()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup.split(LOOKUP_SEP)[0] in self.hidden_lookup_fields:
            return False
        return super().lookup_allowed(lookup, value, request)


class GpuInline(LatestRowsInline):
    model = Gpu
    max_rows = 64
    related = ("node", "model")  # a row's label names the node
    can_delete = False
    fields = readonly_fields = ["index", "uuid", "model", "memory_mib_shown"]
    memory_mib_shown = grouped_field(Gpu, "memory_mib")

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # GPUs come from the agent's NVML inventory


class NodeEventInline(LatestRowsInline):
    """The node's latest status changes, newest first; written only by the node status service."""

    model = NodeEvent
    related = ("actor",)
    ordering = ["-created_at", "-pk"]
    readonly_fields = ["created_at", "actor", "source", "old_status", "new_status", "reason"]
    fields = readonly_fields
    verbose_name = _("status change")
    verbose_name_plural = _("status history")

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("allocations.view_node")  # the history is part of the node


class NodeOperationInline(LatestRowsInline):
    """The node's last operations (fetch host key, inventory, reconcile) with their outcome."""

    model = NodeOperation
    max_rows = 10
    related = ("actor",)
    readonly_fields = ["created_at", "kind", "state", "actor", "started_at", "finished_at", "outcome"]
    fields = readonly_fields
    verbose_name_plural = _("recent operations")
    show_change_link = True  # the operation's own page shows its steps live while it runs

    @admin.display(description=_("result"))
    def outcome(self, obj: NodeOperation) -> str:
        return obj.error or (", ".join(f"{k}: {v}" for k, v in obj.result.items()) if obj.result else "")

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("allocations.view_node")


def fetched_key_type(fetch: NodeOperation) -> str:
    return fetch.result["key_line"].split()[0]


class PinForm(forms.Form):
    operation = forms.IntegerField(widget=forms.HiddenInput)
    fingerprint = forms.CharField(
        label=_("Fingerprint verified on the node"),
        max_length=100,
        help_text=_(
            "Run `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the node's console and type its SHA256."
        ),
    )


@admin.register(Node)
class NodeAdmin(HiddenFieldLookupsMixin, ScaledAdmin):
    list_display = ["hostname", "address", "ssh_port", "gpu_model", "status", "host_key_fingerprint", "last_report_at"]
    list_filter = ["status", GpuModelListFilter]
    list_select_related = ["gpu_model"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "gpu_model":  # the choices without a query per page
            return GpuModelChoiceField(label=db_field.verbose_name, required=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    search_fields = ["hostname", "address"]
    readonly_fields = [
        "host_key",
        "host_key_fingerprint",
        "agent_version",
        "agent_sha256",
        "status",
        "status_reason",
        "status_source",
        "last_report_at",
        "samples_token_set_at",
        "last_sample_at",
        "created_at",
    ]
    exclude = ["samples_token_sha256"]
    hidden_lookup_fields = frozenset({"samples_token_sha256"})
    inlines = [GpuInline, NodeEventInline, NodeOperationInline]
    actions = [
        "read_inventory",
        "drain",
        "bring_online",
        "take_offline",
        "reconcile",
        "rotate_samples_token",
        "revoke_samples_token",
    ]

    def get_urls(self):
        return [
            path("<int:pk>/pin/", self.admin_site.admin_view(self.pin_view), name="allocations_node_pin"),
            *super().get_urls(),
        ]

    def pin_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Queue a fetch of the host key (a job: no SSH in this request), show the fetched key's
        fingerprint once the job finished, and pin it when the operator types the same one."""
        if not request.user.has_perm("allocations.change_node"):
            return HttpResponseRedirect(reverse("admin:index"))
        node = get_object_or_404(Node, pk=pk)
        here = reverse("admin:allocations_node_pin", args=[pk])
        if request.method == "POST" and "fetch" in request.POST:
            node_operation_queue(node=node, kind=NodeOperation.Kind.FETCH_HOST_KEY, actor=request.user)
            return HttpResponseRedirect(here)
        fetch = node_operation_latest(node=node, kind=NodeOperation.Kind.FETCH_HOST_KEY)
        form = None
        if fetch is not None and fetch.state == NodeOperation.State.SUCCEEDED:
            form = PinForm(request.POST or None, initial={"operation": fetch.pk})
            if request.method == "POST" and form.is_valid():
                operation = node.operations.filter(pk=form.cleaned_data["operation"]).first() or fetch
                try:
                    node_pin_fetched_key(operation=operation, confirmed_fingerprint=form.cleaned_data["fingerprint"])
                except PortalError as exc:
                    form.add_error("fingerprint", exc.message)
                else:
                    self.message_user(request, _("Host key pinned."))
                    return HttpResponseRedirect(reverse("admin:allocations_node_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": node,
            "form": form,
            "fetch": fetch,
            "presented": f"{fetched_key_type(fetch)} {fetch.result['fingerprint']}" if form else "",
            "title": _("Pin the host key"),
        }
        return TemplateResponse(request, "admin/allocations/node/pin.html", context)

    def _queue(self, request: HttpRequest, queryset: QuerySet[Node], kind: str) -> None:
        unpinned = [str(node) for node in queryset.filter(host_key="")]
        if unpinned:
            self.message_user(
                request, _("No pinned host key: %(nodes)s") % {"nodes": ", ".join(unpinned)}, messages.ERROR
            )
        queued = [
            node_operation_queue(node=node, kind=kind, actor=request.user) for node in queryset.exclude(host_key="")
        ]
        if queued:
            self.message_user(
                request,
                _("%(count)d operations queued; their results appear on each node's page.") % {"count": len(queued)},
            )

    @admin.action(description=_("Read the GPU inventory"), permissions=["change"])
    def read_inventory(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        self._queue(request, queryset, NodeOperation.Kind.INVENTORY)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Node], status: str, reason: str) -> list[str]:
        done = []
        for node in queryset:
            try:
                node_set_status(node=node, status=status, actor=request.user, reason=reason)
            except PortalError as exc:
                self.message_user(request, f"{node}: {exc.message}", messages.ERROR)
            else:
                done.append(node.hostname)
        return done

    def _confirm_status(
        self, request: HttpRequest, queryset: QuerySet[Node], *, action: str, status: str, title: str, button: str
    ) -> TemplateResponse:
        return confirmation_page(
            self, request, action=action, title=title, button=button,
            intro=_("Please check what happens to each node before you confirm."),
            rows=[admin_confirm.node_consequences(node, new_status=status) for node in queryset],
            selected=[node.pk for node in queryset],
        )  # fmt: skip

    @admin.action(description=_("Drain (no new grants)"), permissions=["change"])
    def drain(self, request: HttpRequest, queryset: QuerySet[Node]) -> HttpResponse | None:
        if not confirmed(request):
            return self._confirm_status(
                request, queryset, action="drain", status=Node.Status.DRAINING,
                title=_("Drain these nodes?"), button=_("Yes, drain"),
            )  # fmt: skip
        done = self._set_status(request, queryset, Node.Status.DRAINING, "drained by an operator")
        if done:
            self.message_user(
                request,
                _("Drained: %(nodes)s. Their grants keep running; no new grant is placed there.")
                % {"nodes": ", ".join(done)},
            )
        return None

    @admin.action(description=_("Bring online"), permissions=["change"])
    def bring_online(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        self._set_status(request, queryset, Node.Status.ONLINE, "")

    @admin.action(description=_("Take offline"), permissions=["change"])
    def take_offline(self, request: HttpRequest, queryset: QuerySet[Node]) -> HttpResponse | None:
        if not confirmed(request):
            return self._confirm_status(
                request, queryset, action="take_offline", status=Node.Status.OFFLINE,
                title=_("Take these nodes offline?"), button=_("Yes, take offline"),
            )  # fmt: skip
        done = self._set_status(request, queryset, Node.Status.OFFLINE, "taken offline by an operator")
        if done:
            self.message_user(
                request,
                _("Taken offline: %(nodes)s. No new grant is placed there.") % {"nodes": ", ".join(done)},
            )
        return None

    @admin.action(description=_("Reconcile now"), permissions=["change"])
    def reconcile(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        self._queue(request, queryset, NodeOperation.Kind.RECONCILE)

    @admin.action(description=_("Rotate the samples token (shown once)"), permissions=["change"])
    def rotate_samples_token(self, request: HttpRequest, queryset: QuerySet[Node]) -> HttpResponse | None:
        """One node at a time: the new token is shown in this response only, never stored in
        a message or the session."""
        if queryset.count() != 1:
            self.message_user(request, _("Rotate the token of one node at a time."), messages.ERROR)
            return None
        node = queryset.get()
        token = node_samples_token_rotate(node=node)
        self.log_change(request, node, "samples token rotated")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "node": node,
            "token": token,
            "push_path": "/etc/gpu-portal/push.json",
            "title": _("New samples token"),
        }
        response = TemplateResponse(request, "admin/allocations/node/samples_token.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description=_("Revoke the samples token"), permissions=["change"])
    def revoke_samples_token(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            node_samples_token_revoke(node=node)
            self.log_change(request, node, "samples token revoked")
        self.message_user(request, _("Samples tokens revoked: these nodes' posts are refused until a new token."))


@admin.register(NodeOperation)
class NodeOperationAdmin(ProgressAdminMixin, ScaledAdmin):
    """Every node operation, to follow many at once (e.g. an inventory read across a rack); its
    page shows the job's steps and state live while it runs."""

    list_display = ["created_at", "node", "kind", "state", "actor", "finished_at", "short_error"]
    list_filter = ["state", "kind"]
    search_fields = ["node__hostname", "error"]
    list_select_related = ["node", "actor"]
    readonly_fields = ["progress", *(f.name for f in NodeOperation._meta.fields if f.name != "steps")]
    # The steps are shown by the progress panel, in Seoul time; never as their raw UTC JSON
    # (a view-only reader's page listed every form field read-only, `steps` included).
    exclude = ["steps"]

    def progress_of(self, obj: NodeOperation) -> dict:
        finished = obj.state not in NodeOperation.OPEN
        since = obj.started_at or obj.created_at
        seconds = ((obj.finished_at or timezone.now()) - since).total_seconds()
        summary = _("%(operation)s on %(node)s, %(elapsed)s") % {
            "operation": obj.get_kind_display(),
            "node": obj.node,
            "elapsed": elapsed_text(seconds),
        }
        if note := stalled_note(steps=obj.steps, since=since, finished=finished):
            summary += " · " + note
        return {
            "state": str(obj.get_state_display()),
            "code": obj.state,
            "finished": finished,
            "summary": str(summary),
            "steps": obj.steps,
            "error": obj.error,
        }

    @admin.display(description=_("error"))
    def short_error(self, obj: NodeOperation) -> str:
        return obj.error[:120]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("allocations.view_node")

    def has_module_permission(self, request) -> bool:
        return request.user.has_perm("allocations.view_node")


class NeedsActionFilter(admin.SimpleListFilter):
    """The failed tasks the ProvisioningTasksFailed alert counts (ProvisioningTask.needs_action):
    failed ones whose purpose still stands and that nothing repaired since."""

    title = _("needs action")
    parameter_name = "needs_action"

    def lookups(self, request, model_admin):
        return [("yes", _("Failed and still needed"))]

    def queryset(self, request, queryset):
        return queryset.filter(ProvisioningTask.needs_action()) if self.value() == "yes" else queryset


@admin.register(ProvisioningTask)
class ProvisioningTaskAdmin(HiddenFieldLookupsMixin, ScaledAdmin):
    list_display = [
        "id",
        "kind",
        "node",
        "account",
        "grant",
        "state",
        "attempts",
        "short_error",
        "created_at",
        "finished_at",
    ]
    # No filter by node: its choices would list the whole fleet on every page (search finds one).
    list_filter = [NeedsActionFilter, "state", "kind"]
    list_select_related = ["node", "account__node", "grant"]
    search_fields = ["account__username", "last_error", "node__hostname"]
    readonly_fields = [f.name for f in ProvisioningTask._meta.fields if f.name != "payload"]
    exclude = ["payload"]  # holds a Jupyter start's nonce (the token is derived, never stored)
    hidden_lookup_fields = frozenset({"payload"})
    actions = ["retry"]

    @admin.display(description=_("last error"))
    def short_error(self, obj: ProvisioningTask) -> str:
        return obj.last_error[:120]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=_("Retry the selected tasks"), permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[ProvisioningTask]) -> None:
        nodes = set()
        for task in queryset:
            task_retry(task=task)
            nodes.add(task.node_id)
        for node_id in nodes:
            enqueue_node(node_id)
        self.message_user(request, _("Queued again."))


class NodeAccountEventInline(LatestRowsInline):
    model = NodeAccountEvent
    related = ("task__node",)
    readonly_fields = ["created_at", "old_status", "new_status", "reason_text", "task"]
    fields = readonly_fields

    @admin.display(description=NodeAccountEvent._meta.get_field("reason").verbose_name)
    def reason_text(self, obj: NodeAccountEvent) -> str:
        return obj.reason_text

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("allocations.view_nodeaccount")


@admin.register(NodeAccount)
class NodeAccountAdmin(ScaledAdmin):
    list_display = ["username", "user", "node", "state", "expires_on"]
    list_filter = ["state"]
    list_select_related = ["user", "node"]
    search_fields = ["username", "user__email"]
    readonly_fields = ["user", "node", "username", "state", "expires_on", "updated_at"]
    inlines = [NodeAccountEventInline]


@admin.register(JupyterSession)
class JupyterSessionAdmin(HiddenFieldLookupsMixin, ScaledAdmin):
    list_display = ["grant", "node", "account", "socket_path", "state", "updated_at"]
    list_filter = ["state"]
    list_select_related = ["grant", "node", "account__node"]
    exclude = ["token_nonce"]
    hidden_lookup_fields = frozenset({"token_nonce"})
    readonly_fields = ["grant", "node", "account", "socket_path", "state", "updated_at"]


@admin.register(SshKey)
class SshKeyAdmin(ScaledAdmin):
    list_display = ["user", "name", "key_type", "bits", "fingerprint", "created_at"]
    list_select_related = ["user"]
    search_fields = ["user__email", "fingerprint"]
    readonly_fields = ["user", "key_type", "public_key", "fingerprint", "bits", "created_at"]
    actions = ["remove_keys"]

    def get_actions(self, request, action_location=admin.ActionLocation.CHANGE_LIST):
        """No bulk delete: a key removed with a plain delete would stay on the nodes."""
        actions = super().get_actions(request, action_location=action_location)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request, obj: SshKey) -> None:
        sshkey_remove(ssh_key=obj)  # the nodes follow, as when the user removes it

    @admin.action(description=_("Remove the selected keys from their owners' accounts"), permissions=["delete"])
    def remove_keys(self, request: HttpRequest, queryset: QuerySet[SshKey]) -> HttpResponse | None:
        queryset = queryset.select_related("user")
        if not confirmed(request):
            return confirmation_page(
                self, request, action="remove_keys", title=_("Remove these keys?"), button=_("Yes, remove"),
                intro=_("Each key is removed from its owner's account and from the nodes where they have access."),
                rows=[admin_confirm.key_consequences(key) for key in queryset],
                selected=[key.pk for key in queryset],
            )  # fmt: skip
        keys = list(queryset)
        self.log_deletions(request, queryset)
        for key in keys:
            sshkey_remove(ssh_key=key)
        removed = [f"{key.fingerprint} ({key.user.email})" for key in keys]
        self.message_user(request, _("Removed: %(keys)s.") % {"keys": ", ".join(removed)})
        return None


from allocations import admin_grants, admin_metering  # noqa: E402, F401 - registers the grant and metering admins
