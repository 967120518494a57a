"""The periodic reconcile is one job per node, spread over the workers: one job walking every
node would outlast its 5-minute interval (and RQ's timeout) at national scale."""

from __future__ import annotations

import django_rq
import pytest

from allocations.jobs import reconcile_node_job, reconcile_nodes_fanout_job
from allocations.models import Node


def node(hostname: str, *, pinned: bool = True) -> Node:
    return Node.objects.create(
        hostname=hostname, address="127.0.0.1", ssh_port=1, gpu_model="H100-80GB",
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOKr6Zq4D2cNnkSwG6qDj4mYz7W0Lq9y6v4Jq8r5i2x1" if pinned else "",
    )  # fmt: skip


@pytest.mark.django_db
def test_each_pinned_node_gets_its_own_reconcile_job_and_not_a_second_while_one_waits(jobs):
    a, b = node("gpu-a"), node("gpu-b")
    node("gpu-new", pinned=False)  # not registered completely yet: nothing to compare
    queue = django_rq.get_queue("default")
    assert reconcile_nodes_fanout_job() == 2
    assert sorted(j.args for j in queue.jobs) == [(a.pk,), (b.pk,)]
    assert reconcile_nodes_fanout_job() == 0  # the workers fell behind: no pile-up
    assert queue.count == 2
    jobs.run()  # nodes without accounts: nothing to compare, each job ends at once
    assert reconcile_nodes_fanout_job() == 2  # finished jobs free their node's id


@pytest.mark.django_db
def test_a_node_job_for_a_node_removed_meanwhile_does_nothing():
    gone = node("gpu-gone")
    assert reconcile_node_job(gone.pk) == 0  # no accounts there: no repairs
    gone.delete()
    assert reconcile_node_job(gone.pk) is None
