"""Operator requests that reach a node run outside the web request: the admin queues a
NodeOperation (`node_operation_queue`), `allocations.jobs.node_operation_job` runs it
(`node_operation_run`), and the admin shows its state, result or error. At 1,250 nodes a
request that waited on SSH would time out; a queued row cannot.
"""

from __future__ import annotations

import logging

import django_rq
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations import ssh
from allocations.models import Node, NodeOperation
from allocations.services import nodes as node_services
from allocations.services.grants import reconcile_node
from portal.errors import PortalError
from portal.progress import steps_append

log = logging.getLogger(__name__)
Op = NodeOperation
# RQ imports the job by its dotted path: this module does not import the jobs module.
JOB = "allocations.jobs.node_operation_job"


@transaction.atomic
def node_operation_queue(*, node: Node, kind: str, actor) -> NodeOperation:
    """Queue one operation; a second click while the same one is still pending returns it.
    The job is enqueued on commit (RQ COMMIT_MODE), so a rolled-back request queues nothing."""
    Node.objects.select_for_update().filter(pk=node.pk).first()  # one queue decision per node at a time
    cutoff = timezone.now() - Op.STALE_AFTER
    open_ops = node.operations.filter(kind=kind, state__in=Op.OPEN).select_for_update()
    pending = open_ops.filter(created_at__gte=cutoff).first()
    if pending is not None:
        return pending
    for lost in open_ops.filter(created_at__lt=cutoff):
        # Its job will find it failed and do nothing if it ever runs.
        _set_state(lost, Op.State.FAILED, error="abandoned: no worker finished it", finished_at=timezone.now())
    operation = Op.objects.create(node=node, kind=kind, actor=actor)
    django_rq.enqueue(JOB, operation.pk)
    return operation


def _set_state(operation: NodeOperation, new: str, **fields) -> None:
    if new not in Op.ALLOWED[operation.state]:
        raise ValueError(f"node operation {operation.pk}: {operation.state} → {new} is not allowed")
    operation.state = new
    for key, value in fields.items():
        setattr(operation, key, value)
    operation.save(update_fields=["state", *fields])


def _start(operation_id: int) -> NodeOperation | None:
    with transaction.atomic():
        operation = Op.objects.select_for_update().select_related("node").filter(pk=operation_id).first()
        if operation is None or operation.state not in Op.OPEN:
            return None  # already done: a retried job does nothing twice
        steps = steps_append(operation.steps, "started on a worker")
        _set_state(operation, Op.State.RUNNING, started_at=timezone.now(), steps=steps)
        return operation


def node_operation_step(*, operation: NodeOperation, text: str) -> None:
    """Record one step of a running operation, committed at once so its admin page shows it
    while the job goes on (the job runs outside any transaction)."""
    operation.steps = steps_append(operation.steps, text)
    Op.objects.filter(pk=operation.pk).update(steps=operation.steps)


def _finish(operation: NodeOperation, new: str, *, result=None, error: str = "") -> NodeOperation:
    with transaction.atomic():
        operation = Op.objects.select_for_update().get(pk=operation.pk)
        steps = steps_append(operation.steps, error[:200] if error else "done")
        _set_state(operation, new, result=result, error=error[:4000], finished_at=timezone.now(), steps=steps)
    return operation


def _perform(operation: NodeOperation) -> dict:
    node = operation.node
    where = f"{node.ssh_username}@{node.address}:{node.ssh_port}"
    if operation.kind == Op.Kind.FETCH_HOST_KEY:
        node_operation_step(operation=operation, text=f"fetching the host key from {node.address}:{node.ssh_port}")
        key_line = node_services.node_fetch_host_key(node=node)
        return {"key_line": key_line, "fingerprint": ssh.fingerprint(key_line)}
    if operation.kind == Op.Kind.INVENTORY:
        node_operation_step(operation=operation, text=f"reading the GPUs through the agent ({where})")
        gpus = node_services.node_inventory(node=node)
        node.refresh_from_db()
        node_operation_step(operation=operation, text=f"{len(gpus)} GPUs recorded; node {node.status}")
        return {"gpus": len(gpus), "status": node.status, "status_reason": node.status_reason}
    if operation.kind == Op.Kind.RECONCILE:
        node_operation_step(operation=operation, text=f"comparing the node with the database ({where})")
        repairs = reconcile_node(node=node)
        node_operation_step(operation=operation, text=f"{len(repairs)} repairs queued")
        return {"repairs": len(repairs)}
    raise ValueError(f"unknown node operation {operation.kind!r}")


def node_operation_run(*, operation_id: int) -> NodeOperation | None:
    """Run a queued operation and record its outcome. SSH and domain errors are the
    operation's result (shown to the operator); anything else is recorded and re-raised so
    the job also lands in RQ's failed registry."""
    operation = _start(operation_id)
    if operation is None:
        return None
    try:
        result = _perform(operation)
    except ssh.SshError as exc:
        return _finish(operation, Op.State.FAILED, error=exc.message)
    except PortalError as exc:
        return _finish(operation, Op.State.FAILED, error=str(exc.message))
    except Exception as exc:
        log.exception("node operation %s failed", operation.pk)
        _finish(operation, Op.State.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    return _finish(operation, Op.State.SUCCEEDED, result=result)


def node_operation_latest(*, node: Node, kind: str) -> NodeOperation | None:
    return node.operations.filter(kind=kind).order_by("-created_at", "-pk").first()


def node_pin_fetched_key(*, operation: NodeOperation, confirmed_fingerprint: str) -> Node:
    """Pin the key a finished fetch brought back, when the operator typed its fingerprint. The
    key comes from the operation row, never from the browser."""
    if operation.kind != Op.Kind.FETCH_HOST_KEY or operation.state != Op.State.SUCCEEDED:
        raise PortalError(_("This fetch has not brought back a key; fetch it again."), code="no_key")
    return node_services.node_pin_host_key(
        node=operation.node, key_line=operation.result["key_line"], confirmed_fingerprint=confirmed_fingerprint
    )
