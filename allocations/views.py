"""Researchers' pages: SSH keys and grants (state, how to connect, Jupyter)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from allocations.models import Grant, JupyterSession, NodeAccount, Notice, ProvisioningTask, SshKey
from allocations.services import jupyter as jupyter_services
from allocations.services import placement
from allocations.services.keys import sshkey_add, sshkey_remove
from allocations.services.provisioning import grant_steps
from allocations.services.usage import grant_usage_summary
from allocations.services.usage_charts import grant_usage_panel
from portal.errors import PortalError

LOCAL_JUPYTER_PORT = 8888


class SshKeyForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100, required=False)
    public_key = forms.CharField(
        label=gettext_lazy("Public key"),
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=gettext_lazy("The contents of your .pub file, e.g. ~/.ssh/id_ed25519.pub."),
    )


@login_required
@require_http_methods(["GET", "POST"])
def key_list(request: HttpRequest) -> HttpResponse:
    form = SshKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            sshkey_add(user=request.user, text=form.cleaned_data["public_key"], name=form.cleaned_data["name"])
        except PortalError as exc:
            form.add_error("public_key", exc.message)
        else:
            messages.success(request, _("The key was added. It reaches your active grants' nodes within a minute."))
            return redirect("allocations:key_list")
    keys = SshKey.objects.filter(user=request.user)
    return render(
        request, "allocations/key_list.html", {"form": form, "keys": keys}, status=400 if form.errors else 200
    )


@login_required
@require_POST
def key_delete(request: HttpRequest, pk: int) -> HttpResponse:
    sshkey_remove(ssh_key=get_object_or_404(SshKey, pk=pk, user=request.user))
    messages.success(request, _("The key was removed from your account and your nodes."))
    return redirect("allocations:key_list")


def get_grant_for_user(user, pk: int) -> Grant:
    """Members (principal investigator, team) and the organisation's owners see a grant."""
    return get_object_or_404(
        Grant.objects.visible_to(user).select_related("application__principal_investigator", "organisation"), pk=pk
    )


@login_required
def grant_detail(request: HttpRequest, pk: int) -> HttpResponse:
    grant = get_grant_for_user(request.user, pk)
    members = grant.members()
    is_member = request.user in members
    assignments = list(grant.assignments.select_related("gpu", "node").order_by("gpu__index"))
    node = assignments[0].node if assignments else None
    account = NodeAccount.objects.filter(user=request.user, node=node).first() if node else None
    # Each member sees only their own server and token, never another member's.
    session = (
        grant.jupyter_sessions.filter(account__user=request.user).exclude(state=JupyterSession.State.STOPPED).first()
        if is_member
        else None
    )
    tasks = grant_steps(grant=grant)  # each step once, its latest run; no query per task
    usage = grant_usage_summary(grant)
    # The dashboard's charts for this grant: one query (its usage per day), none per day.
    charts = grant_usage_panel(grant=grant, usage=usage) if grant.status != Grant.Status.PENDING else None
    context = {
        "grant": grant,
        "is_member": is_member,
        "assignments": assignments,
        "node": node,
        "account": account,
        "session": session,
        "jupyter_token": jupyter_services.session_token(session) if session else "",
        "tasks": tasks,
        "tasks_total": len(tasks),
        "tasks_done": sum(t.state == ProvisioningTask.State.SUCCEEDED for t in tasks),
        "tasks_failed": sum(t.state == ProvisioningTask.State.FAILED for t in tasks),
        "local_port": LOCAL_JUPYTER_PORT,
        "has_keys": SshKey.objects.filter(user=request.user).exists(),
        "usage": usage,
        "usage_panel": charts,
        "idle_notices": grant.notices.filter(kind=Notice.Kind.IDLE, resolved_at__isnull=True),
        "model_online": bool(assignments) or placement.model_online(grant.gpu_model_id),
        # Refresh while the node is being prepared (seconds), not while waiting for capacity (days).
        "refresh": grant.status == Grant.Status.PROVISIONING
        or (session is not None and session.state == JupyterSession.State.WANTED),
    }
    return render(request, "allocations/grant_detail.html", context)


@login_required
@require_POST
def grant_restart_jupyter(request: HttpRequest, pk: int) -> HttpResponse:
    grant = get_grant_for_user(request.user, pk)
    if request.user not in grant.members():
        messages.error(request, _("Only members of the grant can restart its Jupyter server."))
        return redirect("allocations:grant_detail", pk=grant.pk)
    try:
        jupyter_services.grant_restart_jupyter(grant=grant, user=request.user)
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Jupyter is restarting; this page shows when it is back."))
    return redirect("allocations:grant_detail", pk=grant.pk)
