"""Destructive admin actions (revoke, suspend, drain, take offline, remove a user's key) first
show what will happen to whom; only the confirming POST acts, and a message says what was done."""

from __future__ import annotations

import pytest
from django.utils import timezone

from allocations.models import Grant, Node, NodeAccount, ProvisioningTask, SshKey
from allocations.services import grants as grant_services
from tests.allocations.helpers import add_key, approved_grant
from tests.allocations.test_placement import online_node
from tests.factories import ApplicationFactory, CallFactory
from tests.portal.test_review_admin import staff_user

pytestmark = pytest.mark.django_db

GRANTS, NODES, KEYS = "/admin/allocations/grant/", "/admin/allocations/node/", "/admin/allocations/sshkey/"


@pytest.fixture
def operator_client(client):
    client.force_login(
        staff_user(
            "ops@centre.kr", "allocations.view_grant", "allocations.change_grant", "allocations.view_node",
            "allocations.change_node", "allocations.view_sshkey", "allocations.delete_sshkey",
        )
    )  # fmt: skip
    return client


@pytest.fixture
def placed(tmp_path):
    """A grant placed on gpu-07 (provisioning), its principal investigator with a key."""
    node = online_node("gpu-07")
    app = ApplicationFactory(call=CallFactory(), gpu_count=2, gpu_hours=500, title="Protein folding at scale")
    add_key(tmp_path, app.principal_investigator, "pi")
    today = timezone.localdate()
    grant = approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30))
    grant = grant_services.grant_provision(grant=grant)
    assert grant.status == Grant.Status.PROVISIONING
    return grant, node


@pytest.mark.parametrize(
    ("action", "status", "gpus_line", "done"),
    [
        ("revoke", "revoked", "GPUs freed on: gpu-07", "Revoked: #"),
        ("suspend", "suspended", "GPUs kept on: gpu-07", "Suspended: #"),
    ],
)
def test_revoking_or_suspending_a_grant_lists_who_loses_access_and_acts_only_when_confirmed(
    operator_client, placed, action, status, gpus_line, done
):
    grant, _node = placed
    pi = grant.application.principal_investigator
    page = operator_client.post(GRANTS, {"action": action, "_selected_action": [grant.pk]}, HTTP_ACCEPT_LANGUAGE="en")
    body = page.content.decode()
    assert page.status_code == 200
    assert "Protein folding at scale" in body and str(grant.organisation) in body
    assert f"Members who lose access: {pi.email}" in body and gpus_line in body
    assert 'name="confirm" value="1"' in body
    grant.refresh_from_db()
    assert grant.status == Grant.Status.PROVISIONING  # nothing happened yet

    confirmed = operator_client.post(
        GRANTS, {"action": action, "_selected_action": [grant.pk], "confirm": "1"}, HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )  # fmt: skip
    grant.refresh_from_db()
    assert grant.status == status
    assert f"{done}{grant.pk}" in confirmed.content.decode()


def test_draining_a_node_lists_the_grants_that_keep_running_and_acts_only_when_confirmed(operator_client, placed):
    grant, node = placed
    page = operator_client.post(NODES, {"action": "drain", "_selected_action": [node.pk]}, HTTP_ACCEPT_LANGUAGE="en")
    body = page.content.decode()
    assert "gpu-07" in body and "Status: Online → Draining" in body
    assert f"#{grant.pk} Protein folding at scale" in body
    node.refresh_from_db()
    assert node.status == Node.Status.ONLINE

    confirmed = operator_client.post(
        NODES, {"action": "drain", "_selected_action": [node.pk], "confirm": "1"}, HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )  # fmt: skip
    node.refresh_from_db()
    assert node.status == Node.Status.DRAINING
    assert "Drained: gpu-07" in confirmed.content.decode()


def test_taking_a_node_offline_asks_first(operator_client, placed):
    _grant, node = placed
    page = operator_client.post(NODES, {"action": "take_offline", "_selected_action": [node.pk]})
    assert page.status_code == 200
    node.refresh_from_db()
    assert node.status == Node.Status.ONLINE
    operator_client.post(NODES, {"action": "take_offline", "_selected_action": [node.pk], "confirm": "1"})
    node.refresh_from_db()
    assert node.status == Node.Status.OFFLINE


def test_a_key_removed_in_the_admin_also_leaves_the_nodes(operator_client, placed, django_capture_on_commit_callbacks):
    """Before: the admin's bulk delete removed the row only; the key kept logging in on nodes."""
    grant, node = placed
    pi = grant.application.principal_investigator
    key = SshKey.objects.get(user=pi)
    # As after a successful provisioning run: the grant is active and the account exists.
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.ACTIVE)
    NodeAccount.objects.filter(user=pi, node=node).update(state=NodeAccount.State.ACTIVE)
    ProvisioningTask.objects.all().delete()

    page = operator_client.post(
        KEYS, {"action": "remove_keys", "_selected_action": [key.pk]}, HTTP_ACCEPT_LANGUAGE="en"
    )
    body = page.content.decode()
    assert key.fingerprint in body and f"No longer logs in as {pi.email} on: gpu-07" in body
    assert "delete_selected" not in operator_client.get(KEYS).content.decode()
    assert SshKey.objects.filter(pk=key.pk).exists()

    with django_capture_on_commit_callbacks(execute=True):
        confirmed = operator_client.post(
            KEYS, {"action": "remove_keys", "_selected_action": [key.pk], "confirm": "1"}, HTTP_ACCEPT_LANGUAGE="en",
            follow=True,
        )  # fmt: skip
    assert f"Removed: {key.fingerprint}" in confirmed.content.decode()
    assert not SshKey.objects.filter(pk=key.pk).exists()
    push = ProvisioningTask.objects.get(node=node, kind=ProvisioningTask.Kind.SET_KEYS)
    assert push.payload["keys"] == []
