"""Admin actions that reach a node run as jobs: the request only queues a NodeOperation and
returns, the worker does the SSH work, and the node's admin page shows state and result. The
host-key pinning flow (fetch → operator types the fingerprint → pin) works through such a job."""

import time
import types
from contextlib import contextmanager
from datetime import timedelta

import paramiko
import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.utils import timezone

from allocations import ssh
from allocations.jobs import node_operation_job
from allocations.models import Node, NodeOperation
from allocations.services import nodes as node_services
from allocations.services.node_operations import node_operation_queue
from tests.allocations.conftest import free_port
from tests.factories import UserFactory

Op = NodeOperation


@pytest.fixture
def operator(db):
    user = UserFactory(is_staff=True, is_superuser=True)
    TOTP.activate(user, generate_totp_secret())
    return user


@pytest.fixture
def admin_client(client, operator):
    client.force_login(operator)
    return client


@contextmanager
def ssh_forbidden(monkeypatch):
    """Record (and refuse) every attempt to open a TCP or SSH connection to a node."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("SSH inside a web request")

    with monkeypatch.context() as patch:
        patch.setattr(ssh, "socket", types.SimpleNamespace(create_connection=refuse))
        patch.setattr(paramiko.SSHClient, "connect", refuse)
        patch.setattr(paramiko.Transport, "__init__", refuse)
        yield attempts


def registered(node_host, hostname="gpu-ops") -> Node:
    return node_services.node_register(
        hostname=hostname, address=node_host.address, ssh_port=node_host.port,
        ssh_username=node_host.provisioning_user, gpu_model="H100-80GB", agent_path=node_host.agent_path,
    )  # fmt: skip


def test_pinning_in_the_admin_fetches_the_key_in_a_job_then_pins_the_typed_fingerprint(
    admin_client, node_settings, node_host, jobs, monkeypatch
):
    node = registered(node_host)
    pin = f"/admin/allocations/node/{node.pk}/pin/"
    expected = ssh.fingerprint(node_host.host_key)
    with ssh_forbidden(monkeypatch) as attempts:
        assert admin_client.get(pin).status_code == 200
        with jobs.committed():
            response = admin_client.post(pin, {"fetch": "1"})
        assert response.status_code == 302
        waiting = admin_client.get(pin).content.decode()
    assert attempts == []
    operation = Op.objects.get(node=node, kind=Op.Kind.FETCH_HOST_KEY)
    assert operation.state == Op.State.QUEUED
    assert expected not in waiting
    assert 'http-equiv="refresh"' in waiting  # the page refreshes itself until the job finished

    assert jobs.run() == 1
    operation.refresh_from_db()
    assert operation.state == Op.State.SUCCEEDED
    assert operation.started_at <= operation.finished_at
    with ssh_forbidden(monkeypatch) as attempts:
        page = admin_client.get(pin)
        assert expected in page.content.decode()
        wrong = admin_client.post(pin, {"operation": operation.pk, "fingerprint": "SHA256:nope"})
        assert wrong.status_code == 200
        node.refresh_from_db()
        assert node.host_key == ""
        admin_client.post(pin, {"operation": operation.pk, "fingerprint": expected})
    assert attempts == []
    node.refresh_from_db()
    assert node.host_key_fingerprint == expected
    assert node.host_key == node_host.host_key


def test_a_key_line_posted_by_hand_is_never_pinned(admin_client, node_settings, node_host, jobs):
    node = registered(node_host)
    pin = f"/admin/allocations/node/{node.pk}/pin/"
    with jobs.committed():
        admin_client.post(pin, {"fetch": "1"})
    jobs.run()
    operation = Op.objects.get(node=node)
    forged = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    admin_client.post(
        pin, {"operation": operation.pk, "key_line": forged, "fingerprint": ssh.fingerprint(node_host.host_key)}
    )
    node.refresh_from_db()
    assert node.host_key == node_host.host_key  # the key the job fetched, not the posted one


def test_an_unreachable_node_does_not_hold_the_request(admin_client, db):
    node = Node.objects.create(hostname="gpu-gone", address="192.0.2.1", gpu_model="H100-80GB")  # TEST-NET: no answer
    started = time.monotonic()
    response = admin_client.post(f"/admin/allocations/node/{node.pk}/pin/", {"fetch": "1"})
    assert time.monotonic() - started < 2
    assert response.status_code == 302
    assert Op.objects.get(node=node).state == Op.State.QUEUED


def test_a_failed_fetch_shows_its_error_on_the_page(admin_client, node_settings, jobs):
    node = Node.objects.create(hostname="gpu-down", address="127.0.0.1", ssh_port=free_port(), gpu_model="H100-80GB")
    with jobs.committed():
        admin_client.post(f"/admin/allocations/node/{node.pk}/pin/", {"fetch": "1"})
    jobs.run()
    operation = Op.objects.get(node=node)
    assert operation.state == Op.State.FAILED
    assert "cannot reach" in operation.error
    page = admin_client.get(f"/admin/allocations/node/{node.pk}/pin/").content.decode()
    assert "cannot reach" in page
    assert "cannot reach" in admin_client.get(f"/admin/allocations/node/{node.pk}/change/").content.decode()


def test_reading_the_inventory_from_the_admin_queues_a_job_that_reads_it(admin_client, gpu_node, jobs, monkeypatch):
    gpu_node.gpus.all().delete()
    with ssh_forbidden(monkeypatch) as attempts, jobs.committed():
        response = admin_client.post(
            "/admin/allocations/node/", {"action": "read_inventory", "_selected_action": [gpu_node.pk]}
        )
    assert attempts == []
    assert response.status_code == 302
    assert gpu_node.gpus.count() == 0
    jobs.run()
    assert gpu_node.gpus.count() == 8
    operation = Op.objects.get(node=gpu_node, kind=Op.Kind.INVENTORY)
    assert (operation.state, operation.result["gpus"]) == (Op.State.SUCCEEDED, 8)
    page = admin_client.get(f"/admin/allocations/node/{gpu_node.pk}/change/").content.decode()
    assert 'id="operations-0"' in page


def test_reconcile_from_the_admin_runs_as_a_job(admin_client, gpu_node, jobs, monkeypatch):
    with ssh_forbidden(monkeypatch) as attempts, jobs.committed():
        admin_client.post("/admin/allocations/node/", {"action": "reconcile", "_selected_action": [gpu_node.pk]})
    assert attempts == []
    jobs.run()
    operation = Op.objects.get(node=gpu_node, kind=Op.Kind.RECONCILE)
    assert operation.state == Op.State.SUCCEEDED


def test_a_second_click_while_a_fetch_is_queued_queues_nothing_more(admin_client, db):
    node = Node.objects.create(hostname="gpu-twice", address="192.0.2.1", gpu_model="H100-80GB")
    for _ in range(2):
        admin_client.post(f"/admin/allocations/node/{node.pk}/pin/", {"fetch": "1"})
    assert Op.objects.filter(node=node).count() == 1


def test_running_a_finished_operation_again_does_nothing(node_settings, gpu_node, jobs):
    operation = node_operation_queue(node=gpu_node, kind=Op.Kind.INVENTORY, actor=None)
    node_operation_job(operation.pk)
    operation.refresh_from_db()
    finished = operation.finished_at
    node_operation_job(operation.pk)
    operation.refresh_from_db()
    assert operation.finished_at == finished


def test_an_operation_a_killed_worker_left_running_does_not_block_a_new_one(admin_client, db, jobs):
    node = Node.objects.create(hostname="gpu-lost", address="192.0.2.1", gpu_model="H100-80GB")
    lost = Op.objects.create(
        node=node, kind=Op.Kind.FETCH_HOST_KEY, state=Op.State.RUNNING,
        created_at=timezone.now() - timedelta(hours=1), started_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip
    page = admin_client.get(f"/admin/allocations/node/{node.pk}/pin/").content.decode()
    assert 'http-equiv="refresh"' not in page
    assert 'name="fetch"' in page
    admin_client.post(f"/admin/allocations/node/{node.pk}/pin/", {"fetch": "1"})
    lost.refresh_from_db()
    assert lost.state == Op.State.FAILED
    assert Op.objects.filter(node=node, state=Op.State.QUEUED).count() == 1


def test_an_inventory_read_shows_its_steps_and_state_on_its_admin_page_while_it_runs(
    admin_client, gpu_node, jobs, monkeypatch
):
    seen = {}
    real_inventory = node_services.node_inventory

    def read_and_look(*, node):
        operation = Op.objects.get(node=node, kind=Op.Kind.INVENTORY)
        seen["mid"] = admin_client.get(f"/admin/allocations/nodeoperation/{operation.pk}/progress/").json()
        seen["page"] = admin_client.get(f"/admin/allocations/nodeoperation/{operation.pk}/change/").content.decode()
        return real_inventory(node=node)

    monkeypatch.setattr(node_services, "node_inventory", read_and_look)
    with jobs.committed():
        admin_client.post("/admin/allocations/node/", {"action": "read_inventory", "_selected_action": [gpu_node.pk]})
    jobs.run()
    mid = seen["mid"]
    assert (mid["code"], mid["finished"]) == ("running", False)
    assert mid["steps"][0]["text"] == "started on a worker"
    assert "reading the GPUs" in mid["steps"][-1]["text"] and gpu_node.hostname in mid["summary"]
    assert 'data-progress-running="1"' in seen["page"] and "js/admin-progress.js" in seen["page"]
    assert "<script>" not in seen["page"]  # the strict CSP: only the static poller
    operation = Op.objects.get(node=gpu_node, kind=Op.Kind.INVENTORY)
    done = admin_client.get(f"/admin/allocations/nodeoperation/{operation.pk}/progress/").json()
    assert done["finished"] and [x["text"] for x in done["steps"]][-2:] == ["8 GPUs recorded; node online", "done"]
    node_page = admin_client.get(f"/admin/allocations/node/{gpu_node.pk}/change/").content.decode()
    assert f"/admin/allocations/nodeoperation/{operation.pk}/change/" in node_page  # the way to its steps


def test_the_reconcile_command_prints_each_node_as_n_of_n_with_the_elapsed_time(gpu_node, capsys):
    from django.core.management import call_command

    call_command("reconcile_nodes")
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("[1/1]"))
    assert gpu_node.hostname in line and line.endswith(" s)")
    assert f"{gpu_node.hostname}: 0 repairs queued" in line  # 0 of what, not a bare number
    assert "Reconciling 1 node." in out and "Done in" in out  # one node, not "1 nodes"
