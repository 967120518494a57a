"""Placement fills nodes, keeps whole nodes for 8-GPU grants, waits when nothing fits, and
never gives one GPU to two grants at once (PostgreSQL exclusion constraint)."""

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from allocations.models import Assignment, Grant, Node
from allocations.services.nodes import node_record_inventory
from allocations.services.placement import grant_period, grant_place
from tests.factories import ApplicationFactory

REPLAY = json.loads((Path(__file__).resolve().parents[1] / "fixtures/nvml/h100-sxm-8.json").read_text())


def online_node(hostname: str) -> Node:
    """A node whose GPUs come from the recorded NVML answer, as the agent reports them."""
    node = Node.objects.create(
        hostname=hostname, address="192.0.2.1", gpu_model="H100-80GB", host_key="ssh-ed25519 AAAAtest"
    )
    devices = [{**d, "uuid": f"{d['uuid'][:-4]}{hostname[-2:]}{i:02d}"} for i, d in enumerate(REPLAY["devices"])]
    node_record_inventory(
        node=node,
        inventory={"gpus": [{"index": d["index"], "uuid": d["uuid"], "name": d["name"],
                             "memory_mib": d["memory_total"] // 2**20} for d in devices]},
    )  # fmt: skip
    node.refresh_from_db()
    return node


def grant(gpus: int, start_days: int = 0, days: int = 30) -> Grant:
    start = timezone.localdate() + timedelta(days=start_days)
    app = ApplicationFactory(gpu_count=gpus)
    return Grant.objects.create(
        organisation=app.organisation, application=app, gpu_model="H100-80GB", gpu_count=gpus, gpu_hours=1000,
        copay_percent=0, starts_on=start, ends_on=start + timedelta(days=days),
    )  # fmt: skip


def test_the_inventory_makes_the_node_online_with_its_gpus(db):
    node = online_node("gpu-01")
    assert node.status == Node.Status.ONLINE
    assert node.gpus.count() == 8


def test_small_grants_fill_a_used_node_before_touching_a_whole_one(db):
    a, b = online_node("gpu-01"), online_node("gpu-02")
    first = grant_place(grant=grant(4))
    second = grant_place(grant=grant(2))
    assert first[0].node == second[0].node  # packed on the same node
    whole = grant_place(grant=grant(8))
    assert {x.node for x in whole} == ({a, b} - {first[0].node})


def test_a_grant_waits_with_a_reason_when_nothing_fits(db):
    online_node("gpu-01")
    grant_place(grant=grant(6))
    waiting = grant(4)
    assert grant_place(grant=waiting) == []
    waiting.refresh_from_db()
    assert "Waiting for capacity" in waiting.status_reason
    later = grant(4, start_days=60)  # after the first grant ends, the GPUs are free again
    assert len(grant_place(grant=later)) == 4


def test_the_database_refuses_an_overlapping_assignment(db):
    node = online_node("gpu-01")
    g1, g2 = grant(1), grant(1)
    gpu = node.gpus.first()
    start, end = grant_period(g1)
    Assignment.objects.create(grant=g1, node=node, gpu=gpu, period=DateTimeTZRange(start, end, "[)"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(
            grant=g2, node=node, gpu=gpu, period=DateTimeTZRange(start + timedelta(days=3), end, "[)")
        )


@pytest.mark.django_db(transaction=True)
def test_concurrent_placements_never_share_a_gpu():
    online_node("gpu-01")
    grants = [grant(4) for _ in range(3)]  # 12 GPUs asked, 8 exist
    barrier = threading.Barrier(3)
    results = {}

    def place(g):
        try:
            barrier.wait()
            results[g.pk] = len(grant_place(grant=g))
        finally:
            connection.close()

    threads = [threading.Thread(target=place, args=(g,)) for g in grants]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results.values()) == [0, 4, 4]
    gpu_ids = list(Assignment.objects.values_list("gpu_id", flat=True))
    assert len(gpu_ids) == len(set(gpu_ids)) == 8


def test_draining_or_offline_nodes_get_no_new_grants(db):
    node = online_node("gpu-01")
    Node.objects.filter(pk=node.pk).update(status=Node.Status.DRAINING)
    assert grant_place(grant=grant(1)) == []


def test_a_waiting_grant_is_placed_when_capacity_frees_up(db):
    from allocations.jobs import grants_place_pending_job
    from allocations.services.grants import grant_revoke

    online_node("gpu-01")
    big = grant(8)
    Grant.objects.filter(pk=big.pk).update(status=Grant.Status.ACTIVE)
    grant_place(grant=big)
    waiting = grant(4)
    assert grants_place_pending_job() == []
    waiting.refresh_from_db()
    assert waiting.status == Grant.Status.PENDING
    assert "Waiting for capacity" in waiting.status_reason

    grant_revoke(grant=Grant.objects.get(pk=big.pk), actor=None, reason="ended early")
    assert grants_place_pending_job() == [waiting.pk]
    waiting.refresh_from_db()
    assert waiting.status == Grant.Status.PROVISIONING
    assert waiting.assignments.count() == 4


def test_a_grant_starting_later_keeps_its_gpus_reserved_until_its_first_day(db):
    from allocations.services.grants import grant_provision

    online_node("gpu-01")
    later = grant(4, start_days=10)
    grant_provision(grant=later)
    later.refresh_from_db()
    assert later.status == Grant.Status.PENDING
    assert later.assignments.count() == 4
    assert "access opens on" in later.status_reason


def test_one_runner_per_node(db):
    """A second runner finds the node's lock taken and comes back later."""
    import psycopg

    from allocations.services.provisioning import LOCK_NAMESPACE, node_run_tasks

    node = online_node("gpu-01")
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, node.pk])
        assert node_run_tasks(node_id=node.pk) == {"ran": 0, "retry_in": 5, "busy": True}


def test_the_grant_page_explains_waiting_and_refreshes_only_while_preparing(db, client):
    from allocations.services.grants import grant_provision

    waiting = grant(4)
    client.force_login(waiting.application.principal_investigator)
    page = client.get(f"/grants/{waiting.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No node with NVIDIA H100 80GB GPUs is online at the moment" in page
    assert 'http-equiv="refresh"' not in page

    online_node("gpu-01")
    full = grant(8)
    grant_place(grant=full)  # the only node, all its GPUs taken
    page = client.get(f"/grants/{waiting.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Waiting for GPUs of this model to become free" in page
    assert 'http-equiv="refresh"' not in page
    assert "Waiting for capacity" not in page  # the technical reason is for staff

    Assignment.objects.filter(grant=full).delete()
    grant_provision(grant=waiting)
    page = client.get(f"/grants/{waiting.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "being prepared on the node" in page
    assert 'http-equiv="refresh"' in page


def test_a_grant_waiting_for_a_model_no_online_node_has_says_so(db):
    waiting = grant(2)
    assert grant_place(grant=waiting) == []
    waiting.refresh_from_db()
    assert waiting.status_reason == "Waiting for a node: no node with H100-80GB GPUs is online."


def test_a_node_coming_online_places_the_waiting_grants_at_once(db, jobs):
    waiting = grant(2, start_days=3)  # placed (GPUs reserved) without provisioning: no SSH here
    grant_place(grant=waiting)
    assert not waiting.assignments.exists()
    with jobs.committed():
        node = online_node("gpu-01")
    jobs.run()  # the job the node's coming online queued, not the 5-minute periodic run
    assert {a.node for a in waiting.assignments.all()} == {node}


def test_a_placement_that_loses_its_gpus_between_count_and_read_looks_again(db, monkeypatch):
    """Seen with 4 workers (benchmarks/provisioning.py): the node still counted free GPUs, but
    another placement had taken them when they were read; the grant got no GPUs, no reason, and
    stayed pending."""
    from allocations.services import placement

    node = online_node("gpu-01")
    real, calls = placement.free_gpus, []

    def raced(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs).none() if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(placement, "free_gpus", raced)
    placed = grant_place(grant=grant(2))
    assert len(placed) == 2 and {a.node for a in placed} == {node}
    assert len(calls) == 2
