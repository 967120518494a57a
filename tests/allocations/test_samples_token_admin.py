"""Operators rotate or revoke a node's samples token in the admin: the new token is shown once,
in that response only, and works at once; the old one stops working."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from allocations.models import Node, Notice
from tests.allocations.metering_helpers import batch, node_with_gpus, post
from tests.portal.test_review_admin import staff_user

pytestmark = pytest.mark.django_db

NODES = "/admin/allocations/node/"


@pytest.fixture
def operator_client(client):
    client.force_login(staff_user("ops@centre.kr", "allocations.view_node", "allocations.change_node"))
    return client


def test_rotating_shows_the_new_token_once_and_only_it_works(operator_client):
    node, old, gpus = node_with_gpus()
    response = operator_client.post(
        NODES, {"action": "rotate_samples_token", "_selected_action": [node.pk]}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new = re.search(r'<code id="samples-token">([A-Za-z0-9_-]+)</code>', response.content.decode()).group(1)
    api = Client()
    assert post(api, node.hostname, old, batch(gpus)).status_code == 401
    assert post(api, node.hostname, new, batch(gpus)).status_code == 201
    assert new not in operator_client.get(f"{NODES}{node.pk}/change/").content.decode()
    assert new not in Node.objects.filter(pk=node.pk).values_list("samples_token_sha256", flat=True)[0]


def test_revoking_refuses_the_nodes_posts(operator_client):
    node, token, gpus = node_with_gpus()
    operator_client.post(NODES, {"action": "revoke_samples_token", "_selected_action": [node.pk]})
    assert post(Client(), node.hostname, token, batch(gpus)).status_code == 401


def test_a_node_token_hash_cannot_be_probed_through_changelist_lookups(operator_client):
    node, _token, _gpus = node_with_gpus()
    digest = Node.objects.get(pk=node.pk).samples_token_sha256
    response = operator_client.get(f"{NODES}?samples_token_sha256__startswith={digest[:1]}")
    assert response.status_code in (302, 400) or "?e=1" in response.get("Location", "")


def test_a_user_without_node_rights_cannot_rotate(client):
    node, token, gpus = node_with_gpus()
    client.force_login(staff_user("viewer@centre.kr", "allocations.view_node"))
    client.post(NODES, {"action": "rotate_samples_token", "_selected_action": [node.pk]})
    assert post(Client(), node.hostname, token, batch(gpus)).status_code == 201


def test_operators_see_notices_in_the_admin(client):
    node, _token, _gpus = node_with_gpus()
    Notice.objects.create(kind=Notice.Kind.SILENT_NODE, key="silent:x", node=node, details={"last_sample_at": None})
    client.force_login(staff_user("ops2@centre.kr", "allocations.view_notice"))
    body = client.get("/admin/allocations/notice/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Node stopped reporting" in body and node.hostname in body
