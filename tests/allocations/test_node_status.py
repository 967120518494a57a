"""Node status has one owner (node_set_status and the automatic reports beside it): a drain or
an operator's offline survives inventory refreshes and task runs, a node offline for a GPU-model
mismatch stays offline after a task run, every change leaves a NodeEvent, and the admin changes
status only through actions."""

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.utils import timezone

from allocations.jobs import node_tasks_job
from allocations.models import Grant, Node, NodeEvent
from allocations.services import grants as grant_services
from allocations.services import jupyter as jupyter_services
from allocations.services import nodes as node_services
from allocations.services.node_status import node_set_status
from portal.errors import PortalError
from tests.allocations.conftest import keygen
from tests.allocations.helpers import approved_grant, provision, user_with_key
from tests.allocations.test_placement import online_node
from tests.factories import UserFactory

N = Node.Status


@pytest.fixture
def operator(db):
    user = UserFactory(is_staff=True, is_superuser=True)
    TOTP.activate(user, generate_totp_secret())
    return user


def active_grant_on(node, tmp_path):
    app, _key = user_with_key(tmp_path)
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    return grant


def test_a_drain_survives_an_inventory_refresh(gpu_node, operator):
    node_set_status(node=gpu_node, status=N.DRAINING, actor=operator, reason="disk replacement")
    node_services.node_inventory(node=gpu_node)
    gpu_node.refresh_from_db()
    assert gpu_node.status == N.DRAINING
    assert gpu_node.status_reason == "disk replacement"


def test_a_drain_survives_a_successful_task_run(gpu_node, operator, tmp_path):
    grant = active_grant_on(gpu_node, tmp_path)
    node_set_status(node=gpu_node, status=N.DRAINING, actor=operator, reason="maintenance on Friday")
    jupyter_services.grant_restart_jupyter(grant=grant, user=grant.application.principal_investigator)
    assert node_tasks_job(gpu_node.pk)["ran"] == 1  # the restart, with a new token
    gpu_node.refresh_from_db()
    assert gpu_node.status == N.DRAINING


def test_an_operators_offline_survives_inventory_and_task_runs(gpu_node, operator, tmp_path):
    grant = active_grant_on(gpu_node, tmp_path)
    node_set_status(node=gpu_node, status=N.OFFLINE, actor=operator, reason="GPU 3 throws XID errors")
    node_services.node_inventory(node=gpu_node)
    jupyter_services.grant_restart_jupyter(grant=grant, user=grant.application.principal_investigator)
    node_tasks_job(gpu_node.pk)
    gpu_node.refresh_from_db()
    assert (gpu_node.status, gpu_node.status_reason) == (N.OFFLINE, "GPU 3 throws XID errors")


def test_a_node_offline_for_a_gpu_model_mismatch_stays_offline_after_a_task_run(gpu_node, tmp_path):
    grant = active_grant_on(gpu_node, tmp_path)
    Node.objects.filter(pk=gpu_node.pk).update(gpu_model="A100-80GB")  # registered as the wrong model
    node_services.node_inventory(node=gpu_node)
    gpu_node.refresh_from_db()
    assert gpu_node.status == N.OFFLINE
    assert "reports H100-80GB" in gpu_node.status_reason

    grant_services.grant_revoke(grant=grant, actor=None, reason="done")
    assert node_tasks_job(gpu_node.pk)["ran"] >= 1
    gpu_node.refresh_from_db()
    assert gpu_node.status == N.OFFLINE
    assert "reports H100-80GB" in gpu_node.status_reason


def test_a_node_unreachable_for_a_while_comes_back_after_a_successful_run(gpu_node, tmp_path, node_host):
    grant = active_grant_on(gpu_node, tmp_path)
    Node.objects.filter(pk=gpu_node.pk).update(host_key=" ".join(keygen(tmp_path / "other").split()[:2]))
    jupyter_services.grant_restart_jupyter(grant=grant, user=grant.application.principal_investigator)
    node_tasks_job(gpu_node.pk)
    gpu_node.refresh_from_db()
    assert gpu_node.status == N.OFFLINE
    Node.objects.filter(pk=gpu_node.pk).update(host_key=node_host.host_key)
    jupyter_services.grant_restart_jupyter(grant=grant, user=grant.application.principal_investigator)
    node_tasks_job(gpu_node.pk)
    gpu_node.refresh_from_db()
    assert gpu_node.status == N.ONLINE
    assert list(gpu_node.events.values_list("old_status", "new_status"))[-2:] == [
        ("online", "offline"),
        ("offline", "online"),
    ]


def test_every_status_change_writes_an_event_with_actor_and_reason(db, operator):
    node = online_node("gpu-01")
    node_set_status(node=node, status=N.DRAINING, actor=operator, reason="rack move")
    node_set_status(node=node, status=N.ONLINE, actor=operator, reason="")
    events = list(node.events.order_by("pk"))
    assert [(e.old_status, e.new_status, e.actor) for e in events] == [
        ("offline", "online", None),  # the inventory
        ("online", "draining", operator),
        ("draining", "online", operator),
    ]
    assert events[1].reason == "rack move"
    assert events[1].created_at <= timezone.now()


def test_setting_the_same_status_again_writes_nothing(db, operator):
    node = online_node("gpu-01")
    node_set_status(node=node, status=N.DRAINING, actor=operator, reason="rack move")
    node_set_status(node=node, status=N.DRAINING, actor=operator, reason="rack move")
    assert node.events.filter(new_status=N.DRAINING).count() == 1


def test_an_unknown_status_is_refused(db, operator):
    node = online_node("gpu-01")
    with pytest.raises(PortalError):
        node_set_status(node=node, status="retired", actor=operator, reason="")


def test_the_admin_shows_status_read_only_and_changes_it_through_actions(db, client, operator):
    node = online_node("gpu-01")
    client.force_login(operator)
    page = client.get(f"/admin/allocations/node/{node.pk}/change/").content.decode()
    assert 'name="status"' not in page  # read-only: no form field to write it

    changelist = "/admin/allocations/node/"
    client.post(changelist, {"action": "drain", "_selected_action": [node.pk], "confirm": "1"})
    node.refresh_from_db()
    assert node.status == N.DRAINING
    event = NodeEvent.objects.filter(node=node).latest("pk")
    assert (event.old_status, event.new_status, event.actor) == ("online", "draining", operator)

    client.post(changelist, {"action": "take_offline", "_selected_action": [node.pk], "confirm": "1"})
    client.post(changelist, {"action": "bring_online", "_selected_action": [node.pk]})
    node.refresh_from_db()
    assert node.status == N.ONLINE
    assert node.events.count() == 4
    history = client.get(f"/admin/allocations/node/{node.pk}/change/").content.decode()
    assert 'id="events-3"' in history  # the history inline lists all four
