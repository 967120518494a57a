"""Destructive admin actions ask first: the operator sees a page that lists what will happen to
whom (the grant, the members who lose access, the node, the key) and confirms it with a POST.
The same intermediate-page pattern as the organisation admin's number move: the page posts the
action and the selection back to the changelist with `confirm`, and only then the action runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.admin import helpers
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _


@dataclass
class Consequence:
    """One selected object and what the action does to it, in words for the operator."""

    subject: str
    effects: list[str] = field(default_factory=list)


def confirmed(request: HttpRequest) -> bool:
    return request.method == "POST" and request.POST.get("confirm") == "1"


def confirmation_page(
    modeladmin, request: HttpRequest, *, action: str, title: str, intro: str, button: str, rows: list[Consequence],
    selected: list[int],
) -> TemplateResponse:  # fmt: skip
    """The page that lists `rows` and posts `action` on `selected` back with confirm=1."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": title,
        "intro": intro,
        "button": button,
        "rows": rows,
        "action": action,
        "selected": selected,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/allocations/confirm_action.html", context)


# -- what each destructive action does, object by object ---------------------------------------


def grant_consequences(grant, *, new_status: str) -> Consequence:
    """A grant about to be suspended or revoked: its members lose their access on its nodes; a
    revoked grant's GPUs are freed, a suspended one keeps them."""
    from allocations.models import Grant, Node

    row = Consequence(f"#{grant.pk} {grant.application.title} — {grant.organisation}")
    if not grant.can_transition(new_status):
        row.effects.append(_("Left as it is: the grant is “%(status)s”.") % {"status": grant.get_status_display()})
        return row
    row.effects.append(
        _("Status: %(old)s → %(new)s") % {"old": grant.get_status_display(), "new": Grant.Status(new_status).label}
    )
    members = ", ".join(user.email for user in grant.members())
    row.effects.append(_("Members who lose access: %(members)s") % {"members": members or "—"})
    nodes = ", ".join(Node.objects.filter(assignments__grant=grant).distinct().values_list("hostname", flat=True))
    if new_status == Grant.Status.REVOKED:
        row.effects.append(_("GPUs freed on: %(nodes)s") % {"nodes": nodes or "—"})
    else:
        row.effects.append(_("GPUs kept on: %(nodes)s") % {"nodes": nodes or "—"})
    return row


def node_consequences(node, *, new_status: str) -> Consequence:
    """A node about to be drained or taken offline: no new grant is placed there; the grants on
    it keep their GPUs and their members' access."""
    from allocations.models import Grant, Node

    row = Consequence(str(node.hostname))
    if new_status != node.status and not node.can_transition(new_status):
        row.effects.append(_("Left as it is: the node is “%(status)s”.") % {"status": node.get_status_display()})
        return row
    row.effects.append(
        _("Status: %(old)s → %(new)s") % {"old": node.get_status_display(), "new": Node.Status(new_status).label}
    )
    live = (Grant.Status.PROVISIONING, Grant.Status.ACTIVE, Grant.Status.SUSPENDED)
    grants = Grant.objects.filter(assignments__node=node, status__in=live).select_related("application").distinct()
    names = ", ".join(f"#{g.pk} {g.application.title}" for g in grants)
    row.effects.append(_("No new grant is placed on this node."))
    row.effects.append(_("Grants on it keep their GPUs and access: %(grants)s") % {"grants": names or "—"})
    return row


def key_consequences(ssh_key) -> Consequence:
    """A key about to be removed from a user's account: it leaves the authorized keys of every
    node where the user has an account."""
    from allocations.models import NodeAccount

    row = Consequence(f"{ssh_key.name or ssh_key.key_type} {ssh_key.fingerprint} — {ssh_key.user.email}")
    nodes = ", ".join(
        NodeAccount.objects.filter(user=ssh_key.user_id, state=NodeAccount.State.ACTIVE).values_list(
            "node__hostname", flat=True
        )
    )
    row.effects.append(
        _("No longer logs in as %(user)s on: %(nodes)s") % {"user": ssh_key.user.email, "nodes": nodes or "—"}
    )
    return row
