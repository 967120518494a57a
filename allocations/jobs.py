"""Background jobs of the allocations app. Each takes ids, reloads rows, re-checks state and
calls services, so running one twice does no harm."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import django_rq
from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Mod

from allocations import ssh
from allocations.models import Grant, Node, ProvisioningTask
from allocations.services import grants as grant_services
from allocations.services.enqueue import enqueue_node
from allocations.services.findings import idle_grants_scan, idle_report_send, misuse_scan, silent_nodes_scan
from allocations.services.node_operations import node_operation_run
from allocations.services.provisioning import node_run_tasks
from allocations.services.sample_partitions import (
    sample_batches_prune,
    sample_partitions_drop_expired,
    sample_partitions_ensure,
)
from allocations.services.usage import usage_hours_build_due

log = logging.getLogger(__name__)

# The queue of the periodic per-node reconcile (settings.RQ_QUEUES: workers serve it after
# `default`).
RECONCILE_QUEUE = "reconcile"


def grant_provision_job(grant_id: int) -> str:
    grant = Grant.objects.filter(pk=grant_id).first()
    if grant is None:
        return "missing"
    return grant_services.grant_provision(grant=grant).status


def node_tasks_job(node_id: int) -> dict:
    """Run the node's open tasks; schedule itself again when a retry is due or the node is busy."""
    outcome = node_run_tasks(node_id=node_id)
    grant_ids = set(
        Grant.objects.filter(status=Grant.Status.PROVISIONING, tasks__node_id=node_id).values_list("pk", flat=True)
    )
    for grant_id in grant_ids:
        grant_services.grant_after_tasks(grant_id=grant_id)
    if outcome["retry_in"]:
        django_rq.get_queue("default").enqueue_in(timedelta(seconds=outcome["retry_in"]), node_tasks_job, node_id)
    return outcome


def node_operation_job(operation_id: int) -> str | None:
    """An operator's node operation (fetch host key, inventory, reconcile) queued by the admin."""
    operation = node_operation_run(operation_id=operation_id)
    return operation.state if operation else None


def grants_place_pending_job() -> list[int]:
    placed = []
    for grant in Grant.objects.filter(status=Grant.Status.PENDING):
        if grant_services.grant_provision(grant=grant).status != Grant.Status.PENDING:
            placed.append(grant.pk)
    return placed


def grants_expire_job() -> list[int]:
    return grant_services.grants_expire_due()


def _reconcile(node: Node) -> int | str:
    """Repair drift on one node, and run the tasks a killed worker left behind there."""
    try:
        outcome: int | str = len(grant_services.reconcile_node(node=node))
    except ssh.SshError as exc:
        outcome = f"unreachable: {exc.message}"
        log.warning("reconcile %s: %s", node.hostname, exc.message)
    if node.tasks.filter(state__in=ProvisioningTask.OPEN).exists():
        enqueue_node(node.pk)
    return outcome


def reconcile_nodes_job() -> dict:
    """Repair drift on every node in this one job (`manage.py reconcile_nodes`); the periodic
    run fans out instead (`reconcile_nodes_fanout_job`)."""
    return {node.hostname: _reconcile(node) for node in Node.objects.exclude(host_key="")}


def reconcile_node_job(node_id: int) -> int | str | None:
    node = Node.objects.exclude(host_key="").filter(pk=node_id).first()
    return None if node is None else _reconcile(node)


def reconcile_nodes_fanout_job(*, run: int | None = None) -> int:
    """Every 5 minutes (portal.cron): one reconcile job per node, so that every worker takes a
    share. One job walking 7,500 nodes (about 0.25 s each) would outlast both its interval and
    RQ's 600 s timeout. The jobs go to the `reconcile` queue, which workers serve only when
    `default` is empty: 7,500 of them never hold up an e-mail or a provisioning run. The job id
    is the node's: a node whose last reconcile still waits or runs is not queued again (the id
    is free once the job finished: no result is kept).

    A node the SSH connection took offline (unreachable, refused login, changed host key) costs
    up to a connect timeout per try, so it is tried on one run in RECONCILE_UNREACHABLE_EVERY
    (by node id, `run` being the 5-minute slot: spread over the runs). It is not skipped: a
    reconcile that finds drift there is how a node back on the network gets its revocations and
    comes back online. Nodes an operator or the GPU inventory took offline keep their grants and
    access, so they are reconciled every run like the others. Returns how many were queued."""
    from rq.exceptions import DuplicateJobError

    every = max(settings.RECONCILE_UNREACHABLE_EVERY, 1)
    run = int(time.time() // 300) if run is None else run
    unreachable = Q(status=Node.Status.OFFLINE, status_source=Node.Source.CONNECTION)
    nodes = (
        Node.objects.exclude(host_key="").annotate(slot=Mod("pk", every)).exclude(unreachable & ~Q(slot=run % every))
    )
    queue = django_rq.get_queue(RECONCILE_QUEUE, commit_mode="auto")
    queued = 0
    for pk in nodes.values_list("pk", flat=True).iterator():
        try:
            queue.enqueue(
                reconcile_node_job, pk, job_id=f"reconcile-node-{pk}", unique=True, result_ttl=0, failure_ttl=240
            )
        except DuplicateJobError:
            continue
        queued += 1
    return queued


def metering_partitions_job() -> dict:
    """Daily partitions of the samples table: create the coming days', drop the expired, and
    prune the batch rows a resend can no longer need (in bounded chunks)."""
    return {
        "created": sample_partitions_ensure(),
        "dropped": sample_partitions_drop_expired(),
        "batches_pruned": sample_batches_prune(),
    }


def usage_hours_job() -> int:
    """Rebuild the recent hours' usage (and older hours a catching-up node reported on)."""
    return usage_hours_build_due()


def metering_findings_job() -> dict:
    """Idle grants, misuse in the last quarter hour (scans overlap, a finding is made once),
    silent nodes."""
    now = datetime.now(UTC)
    return {
        "idle": len(idle_grants_scan(now=now)),
        "misuse": len(misuse_scan(since=now - timedelta(minutes=15), until=now)),
        "silent": len(silent_nodes_scan(now=now)),
    }


def idle_report_job() -> int:
    return len(idle_report_send())
