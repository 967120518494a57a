"""POST /api/v1/nodes/<hostname>/samples over HTTP with real bearer tokens: what is stored,
what is refused (and that a refusal stores nothing)."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from allocations.models import GpuSample, SampleBatch
from allocations.services.sample_tokens import node_samples_token_revoke, node_samples_token_rotate
from tests.allocations.metering_helpers import batch, node_with_gpus, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    """A client that enforces CSRF like a browser would: the API must not need a token."""
    return Client(enforce_csrf_checks=True)


def test_a_node_posts_a_batch_and_its_samples_are_stored(api):
    node, token, gpus = node_with_gpus()
    response = post(api, node.hostname, token, batch(gpus, utilization=73, power_w=512.5))
    assert response.status_code == 201, response.content
    assert response.json() == {"ok": True, "stored": 8, "duplicate": False}
    rows = GpuSample.objects.filter(node_id=node.pk)
    assert rows.count() == 8
    assert {r.utilization for r in rows} == {73}
    assert {r.power_w for r in rows} == {512.5}
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    node.refresh_from_db()
    assert node.last_sample_at is not None


def test_a_resent_batch_counts_once(api):
    node, token, gpus = node_with_gpus()
    body = batch(gpus)
    assert post(api, node.hostname, token, body).status_code == 201
    again = post(api, node.hostname, token, body)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert GpuSample.objects.filter(node_id=node.pk).count() == 8
    assert SampleBatch.objects.filter(node=node).count() == 1


def test_batches_arriving_out_of_order_are_all_stored(api):
    node, token, gpus = node_with_gpus()
    now = time.time()
    later, earlier = batch(gpus, at=now - 60), batch(gpus, at=now - 600)
    assert post(api, node.hostname, token, later).status_code == 201
    assert post(api, node.hostname, token, earlier).status_code == 201
    assert GpuSample.objects.filter(node_id=node.pk).count() == 16
    node.refresh_from_db()
    assert abs(node.last_sample_at.timestamp() - (now - 60)) < 1  # the older batch does not move it back


def test_a_gpu_of_another_node_is_refused_and_nothing_is_stored(api):
    node, token, gpus = node_with_gpus("gpu-meter-1")
    _other, _other_token, other_gpus = node_with_gpus("gpu-meter-2")
    response = post(api, node.hostname, token, batch([*gpus, other_gpus[0]]))
    assert response.status_code == 422
    assert response.json()["error"] == "unknown_gpu"
    assert GpuSample.objects.count() == 0 and SampleBatch.objects.count() == 0


def test_another_nodes_token_is_refused(api):
    node, _token, gpus = node_with_gpus("gpu-meter-1")
    _other, other_token, _ = node_with_gpus("gpu-meter-2")
    response = post(api, node.hostname, other_token, batch(gpus))
    assert response.status_code == 401
    assert GpuSample.objects.count() == 0


def test_a_revoked_or_rotated_token_is_refused(api):
    node, token, gpus = node_with_gpus()
    node_samples_token_revoke(node=node)
    assert post(api, node.hostname, token, batch(gpus)).status_code == 401
    new = node_samples_token_rotate(node=node)
    assert post(api, node.hostname, token, batch(gpus)).status_code == 401
    assert post(api, node.hostname, new, batch(gpus)).status_code == 201


def test_no_token_or_an_unknown_node_is_refused_alike(api):
    node, token, gpus = node_with_gpus()
    missing = post(api, node.hostname, None, batch(gpus))
    unknown = post(api, "no-such-node", token, batch(gpus))
    assert missing.status_code == unknown.status_code == 401
    assert missing.json() == unknown.json()
    assert GpuSample.objects.count() == 0


def test_a_10_mb_body_is_refused_unread(api):
    node, token, _gpus = node_with_gpus()
    body = b'{"batch_id": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = post(api, node.hostname, token, body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert SampleBatch.objects.count() == 0


def test_malformed_json_is_refused_with_a_reason(api):
    node, token, _gpus = node_with_gpus()
    response = post(api, node.hostname, token, b'{"batch_id": "abcdefgh", "samples": [')
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda b: b.pop("samples"), "bad_schema"),
        (lambda b: b.update(batch_id="../../etc"), "bad_schema"),
        (lambda b: b["samples"][0]["gpus"][0].update(utilization=250), "bad_value"),
        (lambda b: b["samples"][0]["gpus"][0].update(power_w="lots"), "bad_value"),
        (lambda b: b["samples"][0]["gpus"][0].update(processes=[{"pid": 1, "user": "a b; rm"}]), "bad_value"),
        (lambda b: b["samples"][0]["gpus"].append(dict(b["samples"][0]["gpus"][0])), "duplicate_sample"),
    ],
)
def test_a_batch_with_one_bad_value_is_refused_whole(api, change, code):
    node, token, gpus = node_with_gpus()
    body = batch(gpus)
    change(body)
    response = post(api, node.hostname, token, body)
    assert response.status_code == 400
    assert response.json()["error"] == code
    assert GpuSample.objects.count() == 0 and SampleBatch.objects.count() == 0


def test_processes_are_stored_as_posted_whatever_form_their_numbers_take(api):
    node, token, gpus = node_with_gpus()
    procs = [
        [{"pid": 4001, "user": "gp1001", "memory_mib": 512}],
        [{"pid": 4002.0, "user": None, "memory_mib": None, "name": "python"}],  # float pid, unknown user, extra key
        [{"pid": 4003, "user": "gp1002", "memory_mib": 1}, {"pid": 4004, "user": "gp1003", "memory_mib": 2}],
    ]
    body = batch(gpus[:3])
    for gpu, p in zip(body["samples"][0]["gpus"], procs, strict=True):
        gpu["processes"] = p
    body["samples"][0]["gpus"][1].update(utilization=40.0, ecc_uncorrected=None, power_w=300)  # whole floats, ints
    assert post(api, node.hostname, token, body).status_code == 201
    stored = {s.gpu_id: s for s in GpuSample.objects.filter(node_id=node.pk)}
    assert stored[gpus[0].pk].processes == procs[0]
    assert stored[gpus[1].pk].processes == [{"pid": 4002, "user": None, "memory_mib": None}]
    assert stored[gpus[2].pk].processes == procs[2]
    assert (stored[gpus[1].pk].utilization, stored[gpus[1].pk].ecc_uncorrected) == (40, None)
    assert stored[gpus[1].pk].power_w == 300


def test_a_batch_whose_samples_hold_no_gpu_sample_is_refused_with_a_reason(api):
    node, token, _gpus = node_with_gpus()
    response = post(api, node.hostname, token, batch([]))
    assert response.status_code == 400
    assert response.json()["error"] == "bad_schema"
    assert SampleBatch.objects.count() == 0


def test_a_sample_from_a_clock_running_ahead_is_refused_beyond_the_skew(api, settings):
    settings.METERING_CLOCK_SKEW_SECONDS = 120
    node, token, gpus = node_with_gpus()
    assert post(api, node.hostname, token, batch(gpus, at=time.time() + 60)).status_code == 201
    ahead = post(api, node.hostname, token, batch(gpus, at=time.time() + 3600))
    assert ahead.status_code == 422
    assert ahead.json()["error"] == "future_time"
    assert GpuSample.objects.count() == 8


def test_a_sample_older_than_the_retention_is_refused(api, settings):
    node, token, gpus = node_with_gpus()
    old = time.time() - (settings.METERING_RETENTION_DAYS + 1) * 86400
    response = post(api, node.hostname, token, batch(gpus, at=old))
    assert response.status_code == 422
    assert response.json()["error"] == "too_old"


def test_a_batch_above_the_sample_limit_is_refused(api, settings):
    settings.METERING_MAX_SAMPLES_PER_BATCH = 10
    node, token, gpus = node_with_gpus()
    body = batch(gpus)
    body["samples"].append(batch(gpus, at=time.time() - 60)["samples"][0])
    response = post(api, node.hostname, token, body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_many"


def test_a_get_or_a_browser_form_post_is_refused(api):
    node, token, _gpus = node_with_gpus()
    assert api.get(f"/api/v1/nodes/{node.hostname}/samples").status_code == 405
    form = post(api, node.hostname, token, "a=1", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
