"""Approval → placement → account, keys, GPUs, Jupyter on a real sshd node → revoke."""

import paramiko
import pytest
from django.utils import timezone

from allocations.jobs import node_tasks_job
from allocations.models import Grant, JupyterSession, NodeAccount, ProvisioningTask
from allocations.services import grants as grant_services
from allocations.services import jupyter as jupyter_services
from allocations.services.jupyter import session_token
from allocations.services.keys import sshkey_add
from tests.allocations.helpers import approved_grant, provision, ssh_as, user_with_key
from tests.allocations.jupyter_client import socket_status


@pytest.fixture
def active_grant(gpu_node, tmp_path):
    app, key = user_with_key(tmp_path)
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))
    return grant, key


def test_an_approved_grant_becomes_usable_over_ssh_and_jupyter(active_grant, gpu_node):
    grant, key = active_grant
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    assert account.state == NodeAccount.State.ACTIVE

    status, out = ssh_as(gpu_node, account.username, key, "id -un; echo $CUDA_VISIBLE_DEVICES")
    name, visible = out.split()
    assert (status, name) == (0, account.username)
    assigned = [a.gpu.uuid for a in grant.assignments.order_by("gpu__index")]
    assert visible.split(",") == assigned
    assert len(assigned) == 4

    session = JupyterSession.objects.get(grant=grant)
    assert (session.state, session.account) == (JupyterSession.State.RUNNING, account)
    assert socket_status(session.socket_path, session_token(session)) == 200
    assert socket_status(session.socket_path, None) == 403
    assert socket_status(session.socket_path, "wrong-token-" + "x" * 30) == 403


def test_the_grant_page_shows_the_commands_to_members_only(active_grant, client, gpu_node):
    grant, _key = active_grant
    session = JupyterSession.objects.get(grant=grant)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    client.force_login(grant.application.principal_investigator)
    body = client.get(f"/grants/{grant.pk}/").content.decode()
    assert f"ssh -p {gpu_node.ssh_port} {account.username}@{gpu_node.address}" in body
    assert f"ssh -N -L 8888:{session.socket_path} -p {gpu_node.ssh_port} {account.username}@" in body
    assert f"http://127.0.0.1:8888/lab?token={session_token(session)}" in body
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    assert client.get(f"/grants/{grant.pk}/").status_code == 404


def test_provisioning_twice_changes_nothing(active_grant, gpu_node):
    grant, _key = active_grant
    session = JupyterSession.objects.get(grant=grant)
    grant_services.reconcile_node(node=gpu_node)
    node_tasks_job(gpu_node.pk)
    assert not ProvisioningTask.objects.filter(state__in=ProvisioningTask.OPEN).exists()
    assert socket_status(session.socket_path, session_token(session)) == 200


def test_a_new_key_reaches_the_node(active_grant, gpu_node, tmp_path, django_capture_on_commit_callbacks):
    grant, _old_key = active_grant
    import subprocess

    new_key = tmp_path / "second_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(new_key)], check=True)
    user = grant.application.principal_investigator
    with django_capture_on_commit_callbacks(execute=True):
        sshkey_add(user=user, text=new_key.with_suffix(".pub").read_text())
    node_tasks_job(gpu_node.pk)
    account = NodeAccount.objects.get(user=user)
    assert ssh_as(gpu_node, account.username, new_key, "true")[0] == 0


def test_restarting_jupyter_gives_a_new_token_and_refuses_the_old_one(active_grant, gpu_node):
    grant, _key = active_grant
    session = JupyterSession.objects.get(grant=grant)
    old_token = session_token(session)
    jupyter_services.grant_restart_jupyter(grant=grant, user=grant.application.principal_investigator)
    node_tasks_job(gpu_node.pk)
    session.refresh_from_db()
    assert session.state == JupyterSession.State.RUNNING
    assert session_token(session) != old_token
    assert socket_status(session.socket_path, session_token(session)) == 200
    assert socket_status(session.socket_path, old_token) == 403


def test_revoking_removes_access_and_stops_everything(active_grant, gpu_node):
    grant, key = active_grant
    session = JupyterSession.objects.get(grant=grant)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    grant_services.grant_revoke(grant=grant, actor=None, reason="misuse")
    node_tasks_job(gpu_node.pk)

    grant.refresh_from_db()
    account.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert account.state == NodeAccount.State.REVOKED
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, account.username, key, "true")
    assert socket_status(session.socket_path, session_token(session)) == 0  # nothing listens any more
    with open("/etc/shadow") as f:
        line = next(row for row in f if row.startswith(account.username + ":"))
    assert line.split(":")[1].startswith("!")
    # The GPUs are free for later grants from now on.
    assert all(a.period.upper <= timezone.now() for a in grant.assignments.all())


def test_expiry_revokes_at_the_end_date(active_grant, gpu_node):
    grant, key = active_grant
    today = timezone.localdate()
    Grant.objects.filter(pk=grant.pk).update(
        starts_on=today - timezone.timedelta(days=30), ends_on=today - timezone.timedelta(days=1)
    )
    assert grant_services.grants_expire_due() == [grant.pk]
    node_tasks_job(gpu_node.pk)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, account.username, key, "true")


def test_from_approval_to_access_through_the_job_queue(gpu_node, tmp_path, jobs):
    """The real path: approval enqueues on commit, the worker places and provisions."""
    app, key = user_with_key(tmp_path)
    teammate_key = tmp_path / "teammate_ed25519"
    import subprocess

    from tests.factories import MembershipFactory

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(teammate_key)], check=True)
    teammate = MembershipFactory(organisation=app.organisation).user
    sshkey_add(user=teammate, text=teammate_key.with_suffix(".pub").read_text())
    app.team.add(teammate)
    today = timezone.localdate()
    with jobs.committed():
        grant = approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=10))
    with jobs.committed():
        jobs.run()  # grant_provision_job, which queues node_tasks_job
    with jobs.committed():
        jobs.run()
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    for user, private in ((app.principal_investigator, key), (teammate, teammate_key)):
        account = NodeAccount.objects.get(user=user)
        assert ssh_as(gpu_node, account.username, private, "id -un")[1].strip() == account.username
