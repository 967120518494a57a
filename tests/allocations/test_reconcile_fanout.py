"""The periodic reconcile is one job per node, spread over the workers: one job walking every
node would outlast its 5-minute interval (and RQ's timeout) at national scale."""

from __future__ import annotations

import django_rq
import pytest
from rq import SimpleWorker
from rq.job import Job, JobStatus

from allocations.jobs import RECONCILE_QUEUE, reconcile_node_job, reconcile_nodes_fanout_job
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
    queue = django_rq.get_queue(RECONCILE_QUEUE)
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


@pytest.mark.django_db
def test_an_email_queued_after_the_reconcile_fanout_is_the_next_job_a_worker_takes():
    """7,500 reconcile jobs at 60,000 GPUs: a provisioning run or a password-reset e-mail queued
    behind them waited for all of them."""
    for i in range(5):
        node(f"gpu-{i}")
    assert reconcile_nodes_fanout_job() == 5
    default = django_rq.get_queue("default", commit_mode="auto")
    mail = default.enqueue("django.core.mail.mail_admins", "subject", "body")
    assert default.get_job_position(mail) == 0
    # A worker serves the queues in the order of settings.RQ_QUEUES, as `rqworker default reconcile`.
    from django.conf import settings

    queues = [django_rq.get_queue(name) for name in settings.RQ_QUEUES]
    assert [q.name for q in queues][:2] == ["default", RECONCILE_QUEUE]
    SimpleWorker(queues, connection=default.connection).work(burst=True, max_jobs=1)
    assert Job.fetch(mail.id, connection=default.connection).get_status() == JobStatus.FINISHED
    assert django_rq.get_queue(RECONCILE_QUEUE).count == 5  # still waiting: the e-mail went first


@pytest.mark.django_db
def test_a_node_the_connection_took_offline_is_tried_once_in_six_runs_and_other_offline_nodes_every_run(settings):
    settings.RECONCILE_UNREACHABLE_EVERY = 6
    online = node("gpu-online")
    by_operator = node("gpu-maintenance")  # keeps its grants and access: revocations still matter
    Node.objects.filter(pk=by_operator.pk).update(status=Node.Status.OFFLINE, status_source=Node.Source.OPERATOR)
    Node.objects.filter(pk=online.pk).update(status=Node.Status.ONLINE, status_source=Node.Source.INVENTORY)
    lost = node("gpu-unreachable")
    Node.objects.filter(pk=lost.pk).update(status=Node.Status.OFFLINE, status_source=Node.Source.CONNECTION)
    queue = django_rq.get_queue(RECONCILE_QUEUE)
    tried = []
    for run in range(12):
        queue.empty()
        reconcile_nodes_fanout_job(run=run)
        ids = {j.args[0] for j in queue.jobs}
        assert {online.pk, by_operator.pk} <= ids
        tried.append(lost.pk in ids)
    assert tried.count(True) == 2 and tried.index(True) == lost.pk % 6  # every sixth run: 30 minutes
