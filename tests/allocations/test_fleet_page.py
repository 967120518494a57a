"""Operators see the fleet on one admin page: nodes by status, GPUs free / assigned / idle per
model, failing provisioning tasks and nodes that stopped reporting, in the same number of
queries for a small and a larger fleet; people without the node permission are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from allocations.models import Assignment, Gpu, Node, Notice, ProvisioningTask
from tests.allocations.helpers import approved_grant
from tests.factories import ApplicationFactory, CallFactory
from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

pytestmark = pytest.mark.django_db

OPERATOR_PERMS = ("allocations.view_node", "allocations.view_provisioningtask")


def node(hostname: str, status=Node.Status.ONLINE, gpus: int = 4, last_sample_at=None) -> Node:
    n = Node.objects.create(
        hostname=hostname, address="127.0.0.1", gpu_model="H100-80GB", status=status,
        last_sample_at=last_sample_at,
    )  # fmt: skip
    for i in range(gpus):
        Gpu.objects.create(node=n, index=i, uuid=f"GPU-{hostname}-{i}", model="H100-80GB", memory_mib=81559)
    return n


def lend(gpus: list[Gpu], *, idle: bool = False):
    today = timezone.localdate()
    app = ApplicationFactory(call=CallFactory(), gpu_count=len(gpus), gpu_hours=100)
    grant = approved_grant(app, gpu_count=len(gpus), starts_on=today, ends_on=today + timedelta(days=30))
    now = timezone.now()
    for gpu in gpus:
        Assignment.objects.create(
            grant=grant,
            node=gpu.node,
            gpu=gpu,
            period=DateTimeTZRange(now - timedelta(hours=1), now + timedelta(days=1)),
        )
    if idle:
        Notice.objects.create(kind=Notice.Kind.IDLE, key=f"idle:{grant.pk}", grant=grant, details={"hours": 24})
    return grant


@pytest.fixture
def fleet():
    fresh = timezone.now()
    busy = node("gpu-a", last_sample_at=fresh)
    node("gpu-b", status=Node.Status.DRAINING, gpus=2, last_sample_at=fresh)
    node("gpu-silent", last_sample_at=fresh - timedelta(hours=2))
    node("gpu-off", status=Node.Status.OFFLINE, gpus=2)
    gpus = list(busy.gpus.order_by("index"))
    grant = lend(gpus[:2])
    lend(gpus[2:3], idle=True)
    ProvisioningTask.objects.create(
        node=busy, grant=grant, kind=ProvisioningTask.Kind.ENSURE_ACCOUNT, state=ProvisioningTask.State.FAILED,
        attempts=5, last_error="sudo: a password is required",
    )  # fmt: skip
    return busy


def fleet_page(client, user):
    client.force_login(user)
    return client.get("/admin/fleet/", HTTP_ACCEPT_LANGUAGE="en")


def test_an_operator_sees_nodes_gpus_failing_tasks_and_silent_nodes(client, fleet):
    response = fleet_page(client, staff_user("operator@centre.kr", *OPERATOR_PERMS))
    assert response.status_code == 200
    body = response.content.decode()
    # Nodes by status: 2 online + 1 silent online, 1 draining, 1 offline.
    assert '?status__exact=online">Online</a></th><td>2</td>' in body
    assert '?status__exact=draining">Draining</a></th><td>1</td>' in body
    assert '?status__exact=offline">Offline</a></th><td>1</td>' in body
    # 12 H100s: 3 assigned (1 idle), 5 free (1 on gpu-a, 4 on gpu-silent), 4 on draining/offline nodes.
    assert '<th scope="row">H100-80GB</th><td>12</td><td>3</td><td>1</td><td>5</td><td>4</td>' in body
    assert 'id="fleet-capacity" role="img"' in body
    assert "1 provisioning task failing" in body
    assert "sudo: a password is required" in body
    assert "1 node not reporting" in body
    assert ">gpu-silent</a>" in body and ">gpu-off</a>" not in body


def test_the_admin_index_links_the_fleet_page_for_operators(client, fleet):
    client.force_login(staff_user("operator@centre.kr", *OPERATOR_PERMS))
    assert 'href="/admin/fleet/"' in client.get("/admin/").content.decode()


def test_a_reviewer_is_refused_the_fleet_page_and_sees_no_link(client, fleet):
    reviewer = staff_user("reviewer@ministry.go.kr", *REVIEWER_PERMS)
    assert fleet_page(client, reviewer).status_code == 403
    assert 'href="/admin/fleet/"' not in client.get("/admin/").content.decode()


def test_the_fleet_page_needs_no_more_queries_for_a_larger_fleet(client, fleet):
    operator = staff_user("operator@centre.kr", *OPERATOR_PERMS)
    client.force_login(operator)
    client.get("/admin/fleet/", HTTP_ACCEPT_LANGUAGE="en")  # warm the session; the user's language is saved
    with CaptureQueriesContext(connection) as small:
        assert client.get("/admin/fleet/", HTTP_ACCEPT_LANGUAGE="en").status_code == 200
    for n in range(5):
        extra = node(f"gpu-extra-{n}", status=Node.Status.ONLINE)
        lend(list(extra.gpus.all())[:1], idle=n % 2 == 0)
        ProvisioningTask.objects.create(
            node=extra, kind=ProvisioningTask.Kind.ENSURE_ACCOUNT, state=ProvisioningTask.State.RETRYING
        )
    with CaptureQueriesContext(connection) as large:
        body = client.get("/admin/fleet/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert len(large.captured_queries) == len(small.captured_queries) <= 10
    assert "6 provisioning tasks failing" in body
