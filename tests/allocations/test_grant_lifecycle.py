"""Grant lifecycle on the real sshd node: expiry handles each grant on its own (a grant still
being provisioned at its end is expired and revoked too; one that fails does not hold back the
others), and a resumed grant is provisioned again before it counts as active."""

from datetime import timedelta

import paramiko
import pytest
from django.utils import timezone

from allocations.jobs import grant_provision_job, node_tasks_job
from allocations.models import Grant, JupyterSession, Node, NodeAccount, ProvisioningTask
from allocations.services import grants as grant_services
from allocations.services.jupyter import session_token
from tests.allocations.conftest import free_port
from tests.allocations.helpers import approved_grant, provision, ssh_as, user_with_key
from tests.allocations.jupyter_client import socket_status
from tests.allocations.test_placement import grant as placed_grant
from tests.allocations.test_placement import online_node

T = ProvisioningTask.State


def grant_for(tmp_path, name: str, gpus: int = 2):
    app, key = user_with_key(tmp_path, name)
    today = timezone.localdate()
    return approved_grant(app, gpu_count=gpus, starts_on=today, ends_on=today + timedelta(days=30)), key


def end_yesterday(grant: Grant) -> None:
    today = timezone.localdate()
    Grant.objects.filter(pk=grant.pk).update(starts_on=today - timedelta(days=30), ends_on=today - timedelta(days=1))


def test_a_grant_stuck_in_provisioning_expires_and_does_not_keep_the_others_alive(gpu_node, tmp_path):
    active, active_key = grant_for(tmp_path, "active")
    active = provision(active)
    assert active.status == Grant.Status.ACTIVE, active.status_reason
    # The second grant is placed while the node cannot be reached: it stays provisioning.
    real_port = gpu_node.ssh_port
    Node.objects.filter(pk=gpu_node.pk).update(ssh_port=free_port())
    stuck, _stuck_key = grant_for(tmp_path, "stuck")
    grant_provision_job(stuck.pk)
    node_tasks_job(gpu_node.pk)
    stuck.refresh_from_db()
    assert stuck.status == Grant.Status.PROVISIONING
    for g in (stuck, active):
        end_yesterday(g)

    expired = grant_services.grants_expire_due()

    assert sorted(expired) == sorted([stuck.pk, active.pk])
    stuck.refresh_from_db()
    active.refresh_from_db()
    assert (stuck.status, active.status) == (Grant.Status.EXPIRED, Grant.Status.EXPIRED)
    # Nothing that would give the stuck grant access is left to run; its account is revoked.
    giving = ["ensure-account", "set-keys", "set-gpus", "start-jupyter"]
    assert not stuck.tasks.filter(state__in=ProvisioningTask.OPEN, kind__in=giving).exists()
    assert stuck.tasks.filter(kind="revoke", state__in=ProvisioningTask.OPEN).exists()
    assert all(a.period.upper <= timezone.now() for a in stuck.assignments.all())

    Node.objects.filter(pk=gpu_node.pk).update(ssh_port=real_port)
    gpu_node.tasks.filter(state=T.RETRYING).update(next_attempt_at=timezone.now())
    node_tasks_job(gpu_node.pk)
    account = NodeAccount.objects.get(user=active.application.principal_investigator)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, account.username, active_key, "true")


def test_a_grant_whose_expiry_fails_is_marked_and_the_others_still_expire(db, monkeypatch):
    online_node("gpu-01")
    first, broken, last = placed_grant(2), placed_grant(2), placed_grant(2)
    for g in (first, broken, last):
        grant_services.grant_provision(grant=g)
        end_yesterday(g)
    real_expire = grant_services.grant_expire

    def expire(*, grant):
        if grant.pk == broken.pk:
            raise RuntimeError("database hiccup")
        return real_expire(grant=grant)

    monkeypatch.setattr(grant_services, "grant_expire", expire)

    expired = grant_services.grants_expire_due()

    assert sorted(expired) == sorted([first.pk, last.pk])
    for g in (first, broken, last):
        g.refresh_from_db()
    assert (first.status, last.status) == (Grant.Status.EXPIRED, Grant.Status.EXPIRED)
    assert broken.status == Grant.Status.PROVISIONING
    assert "expiry failed" in broken.status_reason and "database hiccup" in broken.status_reason


def test_a_resumed_grant_is_active_only_once_access_is_back(gpu_node, tmp_path):
    grant, key = grant_for(tmp_path, "resumed")
    grant = provision(grant)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)
    grant_services.grant_suspend(grant=grant, actor=None, reason="audit")
    node_tasks_job(gpu_node.pk)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, account.username, key, "true")

    grant = grant_services.grant_resume(grant=grant, actor=None)

    grant.refresh_from_db()
    assert grant.status == Grant.Status.PROVISIONING  # the user cannot log in yet
    assert list(grant.events.values_list("old_status", "new_status"))[-1] == ("suspended", "provisioning")
    node_tasks_job(gpu_node.pk)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    assert ssh_as(gpu_node, account.username, key, "id -un")[1].strip() == account.username
    session = JupyterSession.objects.exclude(state=JupyterSession.State.STOPPED).get(grant=grant)
    assert socket_status(session.socket_path, session_token(session)) == 200
    # The account's history, one event per change, each naming the task that did it.
    events = list(account.events.order_by("pk"))
    assert [(e.old_status, e.new_status) for e in events] == [
        ("wanted", "active"),
        ("active", "revoked"),
        ("revoked", "wanted"),
        ("wanted", "active"),
    ]
    assert [e.task.kind if e.task else None for e in events] == ["ensure-account", "revoke", None, "ensure-account"]


def test_a_resumed_grant_on_an_unreachable_node_stays_provisioning(gpu_node, tmp_path):
    grant, _key = grant_for(tmp_path, "waiting")
    grant = provision(grant)
    grant_services.grant_suspend(grant=grant, actor=None, reason="audit")
    node_tasks_job(gpu_node.pk)
    Node.objects.filter(pk=gpu_node.pk).update(ssh_port=free_port())
    grant_services.grant_resume(grant=grant, actor=None)
    node_tasks_job(gpu_node.pk)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.PROVISIONING
