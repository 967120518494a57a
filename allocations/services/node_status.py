"""Node status has one owner: this module. Operators drain, bring online or take offline
(`node_set_status`); the inventory and SSH connections report what they saw
(`node_report_inventory`, `node_report_unreachable`, `node_report_reachable`), and those
reports only ever undo what an automatic check did, never an operator's decision.

Every change locks the node row, follows Node.ALLOWED and writes a NodeEvent.
"""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from allocations.models import Node, NodeEvent
from portal.errors import PortalError
from portal.outbox import outbox_enqueue

# By dotted path: allocations.jobs imports the services, never the reverse.
PLACE_PENDING_JOB = "allocations.jobs.grants_place_pending_job"

N = Node.Status
Source = Node.Source


def _lock(node: Node) -> Node:
    return Node.objects.select_for_update().get(pk=node.pk)


def _set(node: Node, new: str, *, actor, reason: str, source: str) -> Node:
    """Write the change on a locked row. Setting what is already there changes nothing, so a
    retried job or a repeated click writes no second event."""
    reason = reason[:1000]
    if new == node.status and source == node.status_source:
        if reason != node.status_reason:
            node.status_reason = reason
            node.save(update_fields=["status_reason"])
        return node
    if new != node.status and not node.can_transition(new):
        raise PortalError(
            _("The node is “%(status)s”; it cannot become “%(new)s”.")
            % {"status": node.get_status_display(), "new": new},
            code="bad_transition",
        )
    old = node.status
    node.status, node.status_reason, node.status_source = new, reason, source
    node.save(update_fields=["status", "status_reason", "status_source"])
    NodeEvent.objects.create(node=node, actor=actor, source=source, old_status=old, new_status=new, reason=reason)
    if new == N.ONLINE:
        # Grants waiting for GPUs are placed now, not at the next periodic run.
        outbox_enqueue(PLACE_PENDING_JOB)
    return node


@transaction.atomic
def node_set_status(*, node: Node, status: str, actor, reason: str = "") -> Node:
    """An operator's decision (drain, bring online, take offline). It holds until an operator
    changes it again: inventory refreshes and task runs leave it alone."""
    return _set(_lock(node), status, actor=actor, reason=reason, source=Source.OPERATOR)


@transaction.atomic
def node_report_inventory(*, node: Node, problem: str) -> Node:
    """What the GPU inventory found: `problem` empty means the GPUs match the registration.
    Only a node the operator left to the automatic checks (not drained, not taken offline by
    hand) goes online or offline here."""
    node = _lock(node)
    if node.status == N.DRAINING or (node.status == N.OFFLINE and node.status_source == Source.OPERATOR):
        return node
    if problem:
        return _set(node, N.OFFLINE, actor=None, reason=problem, source=Source.INVENTORY)
    if node.status == N.OFFLINE:
        return _set(node, N.ONLINE, actor=None, reason="", source=Source.INVENTORY)
    return node


@transaction.atomic
def node_report_unreachable(*, node: Node, reason: str) -> Node:
    """A permanent SSH failure (changed host key, refused login, missing agent, retries used
    up): an online node stops receiving grants. A draining or already offline node keeps its
    status and the reason it was given."""
    node = _lock(node)
    if node.status != N.ONLINE:
        return node
    return _set(node, N.OFFLINE, actor=None, reason=reason, source=Source.CONNECTION)


@transaction.atomic
def node_report_reachable(*, node: Node) -> Node:
    """Tasks ran over SSH: a node that was offline only because it could not be reached comes
    back online. An offline set by an operator or by the inventory (wrong GPU model) stays."""
    node = _lock(node)
    if node.status == N.OFFLINE and node.status_source == Source.CONNECTION and node.gpus.exists():
        return _set(node, N.ONLINE, actor=None, reason="", source=Source.CONNECTION)
    return node
