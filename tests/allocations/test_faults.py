"""What goes wrong on real networks: a node that is down, a host key that changed, a worker
killed mid-task, a revocation while the node is unreachable."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from allocations.jobs import grant_provision_job, node_tasks_job, reconcile_nodes_job
from allocations.models import Grant, JupyterSession, Node, NodeAccount, ProvisioningTask
from allocations.services import grants as grant_services
from allocations.services.jupyter import session_token
from allocations.services.unix_ids import unix_uid_for
from tests.allocations.conftest import bootstrap_node, free_port, keygen
from tests.allocations.helpers import approved_grant, device_acl_uids, provision, ssh_as, user_with_key, wipe_node
from tests.allocations.jupyter_client import socket_status

T = ProvisioningTask.State


def make_due(node):
    """Pretend the backoff has elapsed."""
    node.tasks.filter(state=T.RETRYING).update(next_attempt_at=timezone.now())


def today_grant(tmp_path):
    app, key = user_with_key(tmp_path)
    today = timezone.localdate()
    return approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)), key


def test_a_node_down_during_provisioning_is_retried_and_then_succeeds(gpu_node, tmp_path):
    grant, _key = today_grant(tmp_path)
    real_port = gpu_node.ssh_port
    Node.objects.filter(pk=gpu_node.pk).update(ssh_port=free_port())  # nothing listens there
    grant_provision_job(grant.pk)
    outcome = node_tasks_job(gpu_node.pk)
    assert outcome["retry_in"] and outcome["ran"] == 0
    first = ProvisioningTask.objects.filter(grant=grant).order_by("pk").first()
    assert first.state == T.RETRYING
    assert "cannot reach" in first.last_error
    make_due(gpu_node)
    node_tasks_job(gpu_node.pk)
    first.refresh_from_db()
    assert (first.state, first.attempts) == (T.RETRYING, 2)
    assert first.next_attempt_at > timezone.now()  # backoff grows

    Node.objects.filter(pk=gpu_node.pk).update(ssh_port=real_port)  # the node is back
    make_due(gpu_node)
    node_tasks_job(gpu_node.pk)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    first.refresh_from_db()
    assert (first.state, first.attempts, first.last_error) == (T.SUCCEEDED, 3, "")


def test_a_changed_host_key_fails_for_good_without_retry(gpu_node, tmp_path, node_host):
    grant, _key = today_grant(tmp_path)
    other = keygen(tmp_path / "impostor")
    Node.objects.filter(pk=gpu_node.pk).update(host_key=" ".join(other.split()[:2]))
    grant_provision_job(grant.pk)
    outcome = node_tasks_job(gpu_node.pk)
    assert outcome["retry_in"] is None
    tasks = ProvisioningTask.objects.filter(grant=grant)
    assert set(tasks.values_list("state", flat=True)) == {T.FAILED}
    assert "host key" in tasks.first().last_error
    assert tasks.first().attempts <= 1
    gpu_node.refresh_from_db()
    assert gpu_node.status == Node.Status.OFFLINE
    assert "host key" in gpu_node.status_reason
    grant.refresh_from_db()
    assert grant.status == Grant.Status.PROVISIONING
    node_tasks_job(gpu_node.pk)  # nothing is tried again by itself
    assert set(tasks.values_list("attempts", flat=True)) <= {0, 1}


def test_an_operator_retry_after_fixing_the_key_completes_the_grant(gpu_node, tmp_path, node_host):
    grant, _key = today_grant(tmp_path)
    Node.objects.filter(pk=gpu_node.pk).update(host_key=" ".join(keygen(tmp_path / "bad").split()[:2]))
    grant_provision_job(grant.pk)
    node_tasks_job(gpu_node.pk)
    Node.objects.filter(pk=gpu_node.pk).update(host_key=node_host.host_key, status=Node.Status.ONLINE)
    from allocations.services.provisioning import task_retry

    for task in ProvisioningTask.objects.filter(grant=grant):
        task_retry(task=task)
    node_tasks_job(gpu_node.pk)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE


def test_revoking_while_the_node_is_unreachable_is_finished_by_reconcile(gpu_node, tmp_path):
    grant, key = today_grant(tmp_path)
    grant = provision(grant)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    real_port = gpu_node.ssh_port
    Node.objects.filter(pk=gpu_node.pk).update(ssh_port=free_port())
    grant_services.grant_revoke(grant=grant, actor=None, reason="end of project")
    node_tasks_job(gpu_node.pk)
    assert ProvisioningTask.objects.filter(grant=grant, state=T.RETRYING).exists()
    assert ProvisioningTask.objects.filter(grant=grant, kind="revoke", state__in=ProvisioningTask.OPEN).exists()
    assert ssh_as(gpu_node, account.username, key, "true")[0] == 0  # the node never heard of the revocation

    Node.objects.filter(pk=gpu_node.pk).update(ssh_port=real_port)
    make_due(gpu_node)
    reconcile_nodes_job()
    node_tasks_job(gpu_node.pk)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, account.username, key, "true")
    account.refresh_from_db()
    assert account.state == NodeAccount.State.REVOKED


def test_reconcile_repairs_drift(gpu_node, tmp_path, node_host):
    grant, key = today_grant(tmp_path)
    grant = provision(grant)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    session = JupyterSession.objects.get(grant=grant)
    Path(node_host.keys_dir, account.username).unlink()  # a missing key
    subprocess.run(["pkill", "-KILL", "-u", account.username], check=False)  # a dead Jupyter
    device = node_host.device(grant.assignments.order_by("gpu__index").first().gpu.index)
    os.chmod(device, 0o666)  # noqa: S103 - a GPU opened to everyone (a driver reload, an operator)
    time.sleep(0.5)
    assert socket_status(session.socket_path, session_token(session)) == 0

    created = grant_services.reconcile_node(node=gpu_node)
    assert {t.kind for t in created} == {"set-keys", "start-jupyter", "grant-gpus"}
    node_tasks_job(gpu_node.pk)
    assert ssh_as(gpu_node, account.username, key, "true")[0] == 0
    session.refresh_from_db()
    assert socket_status(session.socket_path, session_token(session)) == 200
    st = os.stat(device)  # closed to everyone but the grant's member, by uid
    assert (st.st_uid, st.st_gid, st.st_mode & 0o007) == (0, 0, 0)
    assert device_acl_uids(device) == [unix_uid_for(account.user)]


def test_reconcile_rebuilds_a_node_that_lost_every_account_and_gpu_acl(gpu_node, tmp_path, node_host):
    """The node was wiped (reinstalled, or `make clean-demo` on the demo node): the account
    must come back before the GPU access that names its uid, or every repair fails."""
    grant, key = today_grant(tmp_path)
    grant = provision(grant)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    session = JupyterSession.objects.get(grant=grant)
    devices = wipe_node(node_host, grant, account.username)

    created = grant_services.reconcile_node(node=gpu_node)
    assert [t.kind for t in created][:2] == ["ensure-account", "grant-gpus"]
    node_tasks_job(gpu_node.pk)
    assert not ProvisioningTask.objects.filter(grant=grant, state=T.FAILED).exists()
    assert ssh_as(gpu_node, account.username, key, "id -un")[1].strip() == account.username
    assert all(device_acl_uids(device) == [unix_uid_for(account.user)] for device in devices)
    session.refresh_from_db()
    assert socket_status(session.socket_path, session_token(session)) == 200


def test_reconcile_revokes_a_revoked_user_who_got_access_back(gpu_node, tmp_path, node_host):
    grant, key = today_grant(tmp_path)
    grant = provision(grant)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    grant_services.grant_revoke(grant=grant, actor=None, reason="done")
    node_tasks_job(gpu_node.pk)
    # A careless operator on the node unlocks the account and puts the key back by hand.
    subprocess.run(["usermod", "-p", "*", "-e", "", account.username], check=True)
    Path(node_host.keys_dir, account.username).write_text(key.with_suffix(".pub").read_text())
    assert ssh_as(gpu_node, account.username, key, "true")[0] == 0

    created = grant_services.reconcile_node(node=gpu_node)
    assert [t.kind for t in created] == ["revoke"]
    node_tasks_job(gpu_node.pk)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, account.username, key, "true")


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_task_leaves_a_task_the_next_run_finishes(node_settings, node_host, tmp_path):
    node = bootstrap_node(node_host, hostname="gpu-killed-worker")
    grant, _key = today_grant(tmp_path)
    grant_provision_job(grant.pk)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'].replace('/', '%2F')}:{db['PORT']}/{db['NAME']}",
        "PROVISIONING_SSH_KEY": node_host.portal_key,
        "NODE_ACCOUNT_PREFIX": node_host.prefix,
        "PYTHONUNBUFFERED": "1",
    }
    # A separate worker process runs the tasks; it is killed while Jupyter is starting.
    worker = subprocess.Popen(
        [sys.executable, "-c", f"import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'portal.settings');"
         f"django.setup(); from allocations.jobs import node_tasks_job; node_tasks_job({node.pk})"],
        env=env, cwd=django_settings.BASE_DIR, start_new_session=True,
        stdout=(log := open(tmp_path / "worker.log", "wb")), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    task = None
    while time.monotonic() < deadline:
        task = ProvisioningTask.objects.filter(grant=grant, kind="start-jupyter", state=T.RUNNING).first()
        if task:
            break
        time.sleep(0.02)
    log.close()
    states = list(ProvisioningTask.objects.filter(grant=grant).values_list("kind", "state", "last_error"))
    assert task is not None, (
        f"the worker never reached the Jupyter step: {states}; worker: {(tmp_path / 'worker.log').read_text()[-2000:]}"
    )
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    task.refresh_from_db()
    assert task.state == T.RUNNING  # left behind, as after a crash

    # The next run (reconcile or retry) takes over: the lock dies with the worker's connection, as
    # soon as the server notices it closed (a run that finds it still held is "busy" and re-queued).
    deadline = time.monotonic() + 10
    while node_tasks_job(node.pk)["busy"] and time.monotonic() < deadline:
        time.sleep(0.1)
    task.refresh_from_db()
    grant.refresh_from_db()
    assert task.state == T.SUCCEEDED
    assert grant.status == Grant.Status.ACTIVE
    session = JupyterSession.objects.get(grant=grant)
    assert socket_status(session.socket_path, session_token(session)) == 200
    users = subprocess.run(
        ["pgrep", "-c", "-u", session.account.username, "-f", "jupyter"], capture_output=True, text=True
    )
    assert users.stdout.strip() == "1"  # one server, not two


def test_reconcile_during_provisioning_leaves_the_arriving_members_access_alone(gpu_node, tmp_path):
    """Found by the topology test: reconcile (every 5 minutes) ran while a grant's tasks had
    created its member's account but the grant was not active yet, and revoked that account;
    the grant then became active with its member locked out."""
    from allocations.services.provisioning import node_run_tasks

    grant, _key = today_grant(tmp_path)
    grant_provision_job(grant.pk)
    node = grant.assignments.first().node
    node_run_tasks(node_id=node.pk)  # the tasks ran; the worker has not marked the grant active yet
    grant.refresh_from_db()
    assert grant.status == Grant.Status.PROVISIONING
    created = grant_services.reconcile_node(node=node)
    assert [t.kind for t in created if t.kind == ProvisioningTask.Kind.REVOKE] == []
    node_tasks_job(node.pk)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE
    assert not node.tasks.filter(kind=ProvisioningTask.Kind.REVOKE).exists()
