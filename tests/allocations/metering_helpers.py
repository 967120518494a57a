"""Helpers for the metering tests: nodes with GPUs and a samples token, batches as the agent
builds them, and posting them over HTTP with real headers."""

from __future__ import annotations

import json
import secrets
import time

from allocations.models import Gpu, Node
from allocations.services.sample_partitions import forget_known_partitions
from allocations.services.sample_tokens import node_samples_token_rotate


def node_with_gpus(hostname: str = "gpu-meter-1", count: int = 8) -> tuple[Node, str, list[Gpu]]:
    """A node with `count` H100s and a fresh samples token; returns (node, token, gpus)."""
    forget_known_partitions()  # partitions made in an earlier, rolled-back test are gone
    node = Node.objects.create(hostname=hostname, address="127.0.0.1", gpu_model="H100-80GB")
    gpus = [
        Gpu.objects.create(
            node=node, index=i, uuid=f"GPU-{hostname}-{i:02d}-{secrets.token_hex(4)}", model="H100-80GB",
            memory_mib=81559,
        )
        for i in range(count)
    ]  # fmt: skip
    return node, node_samples_token_rotate(node=node), gpus


def gpu_sample(gpu: Gpu, *, utilization: int = 50, power_w: float = 400.0, processes=None) -> dict:
    return {
        "uuid": gpu.uuid,
        "index": gpu.index,
        "utilization": utilization,
        "memory_utilization": utilization // 2,
        "memory_used_mib": 1000,
        "power_w": power_w,
        "temperature_c": 50,
        "ecc_uncorrected": 0,
        "xid_errors": None,
        "processes": processes or [],
    }


def batch(gpus: list[Gpu], *, at: float | None = None, batch_id: str | None = None, **sample) -> dict:
    return {
        "batch_id": batch_id or secrets.token_hex(16),
        "agent_version": "2.1",
        "samples": [{"time": at if at is not None else time.time(), "gpus": [gpu_sample(g, **sample) for g in gpus]}],
    }


def post(client, hostname: str, token: str | None, body, *, content_type: str = "application/json"):
    """POST as a node does: bearer token header, JSON body, no session, no CSRF token."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(f"/api/v1/nodes/{hostname}/samples", data=data, content_type=content_type, headers=headers)


def metered_grant(gpus: list[Gpu], *, opened_at, closed_at=None, gpu_hours: int = 100):
    """An approved grant lent `gpus` (assignments over the whole day around `opened_at`) with
    one access interval, as the lifecycle would have written it."""
    from datetime import timedelta

    from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
    from django.utils import timezone

    from allocations.models import AccessInterval, Assignment, Grant
    from tests.allocations.helpers import approved_grant
    from tests.factories import ApplicationFactory, CallFactory

    today = timezone.localdate()
    app = ApplicationFactory(call=CallFactory(), gpu_count=len(gpus), gpu_hours=gpu_hours)
    grant = approved_grant(
        app, gpu_count=len(gpus), starts_on=today - timedelta(days=2), ends_on=today + timedelta(days=30)
    )
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.ACTIVE)
    period = DateTimeTZRange(opened_at - timedelta(days=1), opened_at + timedelta(days=2), "[)")
    for gpu in gpus:
        Assignment.objects.create(grant=grant, node=gpu.node, gpu=gpu, period=period)
    AccessInterval.objects.create(grant=grant, gpu_count=len(gpus), opened_at=opened_at, closed_at=closed_at)
    grant.refresh_from_db()
    return grant


def samples_every_minute(gpus: list[Gpu], start: float, minutes: int, **sample) -> dict:
    """One batch with a sample of each GPU at the start of each minute."""
    body = batch(gpus, at=start, **sample)
    body["samples"] = [
        {"time": start + 60 * m, "gpus": [gpu_sample(g, **sample) for g in gpus]} for m in range(minutes)
    ]
    return body
