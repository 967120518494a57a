"""The operators' fleet overview: nodes by status, GPUs free / assigned / idle per model,
provisioning tasks failing, nodes not reporting. Read-only, in a fixed number of grouped queries
whatever the size of the fleet (lists are cut at LIMIT rows, with their full count)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from allocations.models import Assignment, Gpu, Node, Notice, ProvisioningTask

LIMIT = 50


@dataclass(frozen=True)
class ModelCapacity:
    """GPUs of one model. `free`: on online nodes and lent to no grant now; `idle`: lent to a
    grant with an open idle notice (part of `assigned`); `unavailable`: on draining or offline
    nodes and lent to no grant."""

    model: str
    total: int
    assigned: int
    idle: int
    free: int
    unavailable: int


@dataclass(frozen=True)
class Fleet:
    nodes_by_status: list[tuple[str, str, int]]  # (status, label, count), every status listed
    models: list[ModelCapacity]
    failing_tasks: list[ProvisioningTask]
    failing_count: int
    silent_nodes: list[Node]
    silent_count: int
    silent_since: datetime


def fleet_overview(*, now: datetime | None = None) -> Fleet:
    now = now or timezone.now()
    counts = dict(Node.objects.order_by().values_list("status").annotate(n=Count("pk")))
    nodes_by_status = [(value, label, counts.get(value, 0)) for value, label in Node.Status.choices]

    current = Assignment.objects.filter(gpu=OuterRef("pk"), period__contains=now)
    idle = current.filter(
        Exists(Notice.objects.filter(grant=OuterRef("grant"), kind=Notice.Kind.IDLE, resolved_at__isnull=True))
    )
    online = Q(node__status=Node.Status.ONLINE)
    rows = (
        Gpu.objects.annotate(lent=Exists(current), idle=Exists(idle))
        .order_by()
        .values("model")
        .annotate(
            total=Count("pk"),
            assigned=Count("pk", filter=Q(lent=True)),
            idle_n=Count("pk", filter=Q(idle=True)),
            free=Count("pk", filter=Q(lent=False) & online),
            unavailable=Count("pk", filter=Q(lent=False) & ~online),
        )
        .order_by("model")
    )
    models = [
        ModelCapacity(r["model"], r["total"], r["assigned"], r["idle_n"], r["free"], r["unavailable"]) for r in rows
    ]

    failing = ProvisioningTask.objects.filter(
        state__in=[ProvisioningTask.State.FAILED, ProvisioningTask.State.RETRYING]
    )
    failing_tasks = list(failing.select_related("node", "grant", "account").order_by("-created_at", "-pk")[:LIMIT])
    silent_since = now - timedelta(minutes=settings.METERING_SILENT_NODE_MINUTES)
    silent = Node.objects.exclude(status=Node.Status.OFFLINE).filter(
        Q(last_sample_at__lt=silent_since) | Q(last_sample_at__isnull=True)
    )
    silent_nodes = list(silent.order_by("last_sample_at", "hostname")[:LIMIT])
    return Fleet(
        nodes_by_status=nodes_by_status,
        models=models,
        failing_tasks=failing_tasks,
        failing_count=len(failing_tasks) if len(failing_tasks) < LIMIT else failing.count(),
        silent_nodes=silent_nodes,
        silent_count=len(silent_nodes) if len(silent_nodes) < LIMIT else silent.count(),
        silent_since=silent_since,
    )
