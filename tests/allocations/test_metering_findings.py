"""Attacks on metering (issue 10) by the adversaries it names: a node posting what it likes, a
researcher on a node, an operator's edits. Each test reproduced a finding before its fix."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from allocations.agent.gpu_portal_agent import metering
from allocations.models import GpuSample, Node, SampleBatch
from allocations.services.findings import misuse_scan
from tests.allocations.metering_helpers import batch, metered_grant, node_with_gpus, post

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field", ["utilization", "power_w", "memory_used_mib", "time", "pid"])
def test_a_number_too_large_for_a_float_is_refused_with_a_reason_not_a_server_error(field):
    node, token, gpus = node_with_gpus()
    huge = "1" + "0" * 400  # valid JSON; Python's float() overflows on it
    body = batch(gpus[:1], processes=[{"pid": 4242, "user": "gp1001", "memory_mib": 1}])
    sample = body["samples"][0]
    if field == "time":
        sample["time"] = "HUGE"
    elif field == "pid":
        sample["gpus"][0]["processes"][0]["pid"] = "HUGE"
    else:
        sample["gpus"][0][field] = "HUGE"
    response = post(
        Client(raise_request_exception=False), node.hostname, token, json.dumps(body).replace('"HUGE"', huge)
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "bad_value"
    assert SampleBatch.objects.count() == 0


def test_deeply_nested_json_is_refused_as_malformed_not_a_server_error():
    node, token, _gpus = node_with_gpus()
    body = "[" * 200_000 + "]" * 200_000  # 400 kB, under the body limit
    response = post(Client(raise_request_exception=False), node.hostname, token, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "malformed_json"


def test_a_pid_beyond_a_postgresql_integer_cannot_stop_the_misuse_scan_for_every_node():
    """One node posting pid 2**31 made misuse_scan fail ('integer out of range') for the whole
    fleet's batches of that window, so no misuse was reported anywhere."""
    node, token, gpus = node_with_gpus("gpu-meter-1")
    other, other_token, other_gpus = node_with_gpus("gpu-meter-2")
    started = datetime.now(UTC) - timedelta(minutes=1)
    metered_grant(other_gpus[:1], opened_at=datetime.now(UTC) - timedelta(hours=1))
    poisoned = post(Client(), node.hostname, token, batch(gpus[:1], processes=[{"pid": 2**31, "user": "gp1"}]))
    assert poisoned.status_code == 400, poisoned.content  # Linux pids end far below 2**31
    misused = batch(other_gpus[1:2], processes=[{"pid": 777, "user": "gp2002", "memory_mib": 100}])
    assert post(Client(), other.hostname, other_token, misused).status_code == 201
    found = misuse_scan(since=started)
    assert [(n.node.hostname, n.details["user"], n.details["pid"]) for n in found] == [("gpu-meter-2", "gp2002", 777)]


def test_a_researcher_running_hundreds_of_gpu_processes_does_not_blind_the_node(tmp_path):
    """The portal refuses a GPU sample with more than 256 processes, and the agent drops a
    refused batch: a researcher starting 300 CUDA processes on their GPU made every minute's
    batch of the whole node refused (no utilisation, energy, idle or misuse findings for any
    grant on it). The agent keeps the 256 processes using the most memory, and names a user
    the portal cannot take by its uid (next test)."""
    processes = [{"pid": 4_190_000 + i, "usedGpuMemory": (i % 7) * 2**20, "user": "gp1001"} for i in range(300)]
    processes.append({"pid": 99999, "usedGpuMemory": 40 * 2**30, "user": "gp2002"})
    device = {"uuid": "GPU-x", "index": 0, "utilization": {"gpu": 1, "memory": 1}, "compute_processes": processes}
    sample = metering._sample_device(device)
    assert len(sample["processes"]) == 256
    assert {"pid": 99999, "user": "gp2002", "memory_mib": 40 * 1024} in sample["processes"]
    assert sample["processes_dropped"] == 45

    node, token, gpus = node_with_gpus()
    body = batch(gpus[:1])
    body["samples"][0]["gpus"][0]["processes"] = sample["processes"]
    body["samples"][0]["gpus"][0]["processes_dropped"] = sample["processes_dropped"]
    response = post(Client(), node.hostname, token, body)
    assert response.status_code == 201, response.content
    assert GpuSample.objects.filter(node_id=node.pk).count() == 1


def test_a_process_user_name_the_portal_cannot_take_is_sent_as_its_uid(monkeypatch):
    """A directory user such as 'LAB\\alice' running on a GPU made the batch refused whole."""
    import os

    monkeypatch.setattr(metering.pwd, "getpwuid", lambda uid: type("E", (), {"pw_name": "LAB\\alice x"})())
    assert metering.process_user(os.getpid()) == str(os.getuid())


def test_a_node_reporting_another_nodes_lent_gpu_in_its_inventory_does_not_take_it_over():
    """Inventory matched GPUs by uuid alone and moved the row to the reporting node: node B
    listing node A's lent GPU took it (B's token could then post its samples, A's batches were
    all refused as 'unknown_gpu', and the grant's provisioning pointed at the wrong host)."""
    from allocations.services.nodes import node_record_inventory

    node_a, token_a, gpus_a = node_with_gpus("gpu-meter-1")
    node_b, _token_b, _gpus_b = node_with_gpus("gpu-meter-2", count=0)
    Node.objects.filter(pk__in=[node_a.pk, node_b.pk]).update(status=Node.Status.ONLINE)
    metered_grant(gpus_a[:1], opened_at=datetime.now(UTC) - timedelta(hours=1))
    stolen = {"index": 0, "uuid": gpus_a[0].uuid, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}
    node_record_inventory(node=node_b, inventory={"gpus": [stolen]})
    gpus_a[0].refresh_from_db()
    node_b.refresh_from_db()
    assert gpus_a[0].node_id == node_a.pk
    assert node_b.status == Node.Status.OFFLINE
    assert gpus_a[0].uuid in node_b.status_reason and "gpu-meter-1" in node_b.status_reason
    assert post(Client(), node_a.hostname, token_a, batch(gpus_a)).status_code == 201


def test_energy_of_an_hour_counts_the_minutes_before_its_first_sample():
    """A sample stands for the time until the next one, but it was cut at the end of its hour
    and the next hour started at its own first sample: with samples at :30 each hour lost the
    first half minute of every GPU (0.8 % of the energy, always under)."""
    from allocations.models import UsageHour
    from allocations.services.usage import usage_hour_build
    from tests.allocations.metering_helpers import samples_every_minute

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    node, token, gpus = node_with_gpus()
    grant = metered_grant(gpus[:2], opened_at=hour - timedelta(hours=2))
    body = samples_every_minute(gpus[:2], (hour - timedelta(hours=1)).timestamp() + 30, 180, power_w=600.0)
    assert post(Client(), node.hostname, token, body).status_code == 201
    for h in (hour - timedelta(hours=1), hour, hour + timedelta(hours=1)):
        usage_hour_build(hour=h)
    row = UsageHour.objects.get(grant=grant, hour=hour)
    assert row.sample_count == 2 * 60
    assert row.energy_wh == pytest.approx(2 * 600.0)  # two GPUs at 600 W for the whole hour
    assert UsageHour.objects.get(grant=grant, hour=hour - timedelta(hours=1)).energy_wh == pytest.approx(
        2 * 600.0 * 59.5 / 60
    )  # the first sample came at 0:30: nothing before it is known


@pytest.mark.parametrize("where", ["user", "batch_id"])
def test_a_name_ending_in_a_newline_is_refused_with_a_reason(where):
    """'$' also matches before a final newline: a user 'gp1001\\n' passed the name rule and its
    raw newline split the COPY row (a 500, which the agent resends forever, blocking its queue)."""
    node, token, gpus = node_with_gpus()
    body = batch(gpus[:1], processes=[{"pid": 4242, "user": "gp1001", "memory_mib": 1}])
    if where == "user":
        body["samples"][0]["gpus"][0]["processes"][0]["user"] = "gp1001\n"
    else:
        body["batch_id"] = "abcdefgh12\n"
    response = post(Client(raise_request_exception=False), node.hostname, token, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"] in {"bad_value", "bad_schema"}
    assert SampleBatch.objects.count() == 0


def test_a_staff_user_without_the_gpu_model_permission_cannot_see_or_add_models(client):
    from tests.portal.test_review_admin import staff_user

    client.force_login(staff_user("reviewer@centre.kr", "portal.view_application"))
    assert client.get("/admin/allocations/gpumodel/").status_code == 403
    assert client.post("/admin/allocations/gpumodel/add/", {"code": "X1-1GB"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_operators_saving_one_nvml_name_at_once_leave_it_in_one_model():
    """The admin checks the name in clean(), before its save: two saves at once both passed
    and both rows listed it (the nodes reporting it then went offline as ambiguous). Each
    admin save runs in one transaction; the check now holds the table until it commits."""
    import threading

    from django.core.exceptions import ValidationError
    from django.db import connection, transaction

    from allocations.models import GpuModel

    first_checked, let_first_save = threading.Event(), threading.Event()
    outcome = {}

    def operator(code: str, wait: bool) -> None:
        try:
            with transaction.atomic():  # as the admin's change view does
                row = GpuModel(code=code, name=code, memory_gib=1, nvml_names=["NVIDIA Race 1GB"])
                row.full_clean()
                if wait:
                    first_checked.set()
                    let_first_save.wait(10)
                row.save()
            outcome[code] = "saved"
        except ValidationError:
            outcome[code] = "refused"
        finally:
            connection.close()

    first = threading.Thread(target=operator, args=("RACE-A", True))
    first.start()
    assert first_checked.wait(10)
    second = threading.Thread(target=operator, args=("RACE-B", False))
    second.start()
    second.join(1.0)  # with the lock, the second check waits for the first save
    let_first_save.set()
    first.join(10)
    second.join(10)
    assert outcome == {"RACE-A": "saved", "RACE-B": "refused"}
    assert list(GpuModel.objects.filter(nvml_names__contains=["NVIDIA Race 1GB"]).values_list("code", flat=True)) == [
        "RACE-A"
    ]


def test_a_user_restarting_processes_on_a_gpu_not_lent_to_them_is_one_incident_not_one_per_minute():
    """Misuse notices were keyed by pid: a loop starting a new CUDA process every minute on a
    GPU not lent to its user made a notice and an operators' e-mail every minute. One open
    notice per GPU and user; the later processes are added to it; once an operator resolved
    it, misuse again is a new incident."""
    import time as clock

    from allocations.models import Notice
    from portal.models import OutboxMessage

    node, token, gpus = node_with_gpus()
    started = datetime.now(UTC) - timedelta(minutes=1)
    now = clock.time()
    for minute, pid in enumerate((777, 778, 779)):
        body = batch(gpus[:1], at=now - 300 + 60 * minute, processes=[{"pid": pid, "user": "gp2002", "memory_mib": 9}])
        assert post(Client(), node.hostname, token, body).status_code == 201
        misuse_scan(since=started)
    notices = list(Notice.objects.filter(kind=Notice.Kind.MISUSE))
    assert len(notices) == 1
    assert notices[0].details["pid"] == 777 and notices[0].details["more_pids"] == [778, 779]
    emails = OutboxMessage.objects.filter(func="portal.jobs.send_email_job")
    assert emails.count() == 1

    Notice.objects.filter(pk=notices[0].pk).update(resolved_at=datetime.now(UTC))
    body = batch(gpus[:1], at=now - 60, processes=[{"pid": 900, "user": "gp2002", "memory_mib": 9}])
    assert post(Client(), node.hostname, token, body).status_code == 201
    assert [n.details["pid"] for n in misuse_scan(since=started)] == [900]


def test_a_node_that_stopped_sampling_for_half_an_hour_is_not_credited_energy_for_the_gap():
    """The sample before a gap stood for up to two minutes (the jitter allowance), so each
    gap of a powered-off or hung node added a minute of energy no sample measured."""
    from allocations.models import UsageHour
    from allocations.services.usage import usage_hour_build
    from tests.allocations.metering_helpers import samples_every_minute

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    node, token, gpus = node_with_gpus()
    grant = metered_grant(gpus[:1], opened_at=hour - timedelta(hours=1))
    before = samples_every_minute(gpus[:1], hour.timestamp(), 20, power_w=300.0)  # 0:00 .. 0:19
    after = samples_every_minute(gpus[:1], hour.timestamp() + 50 * 60, 10, power_w=300.0)  # 0:50 .. 0:59
    for body in (before, after):
        assert post(Client(), node.hostname, token, body).status_code == 201
    usage_hour_build(hour=hour)
    row = UsageHour.objects.get(grant=grant, hour=hour)
    assert row.sample_count == 30
    assert row.energy_wh == pytest.approx(30 * 300.0 / 60)  # 30 measured minutes at 300 W


def test_a_sample_a_little_late_still_covers_the_time_until_the_next_one():
    """Jitter (a push 80 s after the one before) is no gap: the time between counts whole."""
    from allocations.models import UsageHour
    from allocations.services.usage import usage_hour_build

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    node, token, gpus = node_with_gpus()
    grant = metered_grant(gpus[:1], opened_at=hour - timedelta(hours=1))
    times = [hour.timestamp() + t for t in (0, 60, 140, 200)]
    body = batch(gpus[:1], at=times[0], power_w=360.0)
    body["samples"] = [{**body["samples"][0], "time": t} for t in times]
    assert post(Client(), node.hostname, token, body).status_code == 201
    usage_hour_build(hour=hour)
    assert UsageHour.objects.get(grant=grant, hour=hour).energy_wh == pytest.approx(360.0 * 260 / 3600)


def test_a_process_naming_itself_like_a_status_line_is_still_reported_as_its_own_user():
    """Held: the agent reads the owner from /proc/<pid>/status as root; a researcher's process
    renaming itself 'x\\nUid: 0' cannot pass as root (the kernel escapes the name's newline)."""
    import os
    import pwd
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another user")
    nobody = pwd.getpwnam("nobody")
    code = (
        "import ctypes, sys, time; ctypes.CDLL(None).prctl(15, b'x\\nUid:\\t0\\t0', 0, 0, 0); "
        "print('ready', flush=True); time.sleep(30)"
    )
    child = subprocess.Popen(["/usr/bin/python3", "-c", code], user=nobody.pw_uid, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
        with open(f"/proc/{child.pid}/status") as f:
            assert "Uid" in f.readline()  # the rename happened: "Name:\tx\\nUid:..." on one line
        assert metering.process_user(child.pid) == "nobody"
    finally:
        child.kill()
        child.wait()


def test_a_gzip_body_is_not_inflated_but_refused_as_malformed():
    """Held: the API never decompresses (no gzip bomb); a compressed body is not JSON."""
    import gzip

    node, token, _gpus = node_with_gpus()
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    response = Client().post(
        f"/api/v1/nodes/{node.hostname}/samples", data=bomb, content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert response.status_code == 400 and response.json()["error"] == "malformed_json"


def test_a_batch_id_reused_with_other_content_stores_nothing_new():
    """Held (by design): a resent batch counts once, so a second body under a known batch id
    is answered as a duplicate and none of it is stored."""
    node, token, gpus = node_with_gpus()
    assert post(Client(), node.hostname, token, batch(gpus[:1], batch_id="same-id-0001")).status_code == 201
    again = post(Client(), node.hostname, token, batch(gpus, batch_id="same-id-0001", utilization=99))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert GpuSample.objects.filter(node_id=node.pk).count() == 1


def test_an_nvml_name_an_operator_moves_to_another_model_does_not_relabel_a_nodes_gpus():
    """The operator edits the NVML names so that a node's GPUs map elsewhere: the next inventory
    takes the node offline with the reason, and its GPU rows (lent to grants of their model)
    keep their model and node. They were relabelled to the other model before."""
    from allocations.models import GpuModel
    from allocations.services.nodes import node_record_inventory

    node, _token, gpus = node_with_gpus(count=1)
    Node.objects.filter(pk=node.pk).update(status=Node.Status.ONLINE)
    h100 = GpuModel.objects.get(pk="H100-80GB")
    h100.nvml_names = [n for n in h100.nvml_names if n != "NVIDIA H100 80GB HBM3"]
    h100.save()
    GpuModel.objects.create(code="H100-NEW", name="New", memory_gib=80, nvml_names=["NVIDIA H100 80GB HBM3"])
    report = {"index": 0, "uuid": gpus[0].uuid, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}
    node_record_inventory(node=node, inventory={"gpus": [report]})
    node.refresh_from_db()
    gpus[0].refresh_from_db()
    assert node.status == Node.Status.OFFLINE and "H100-NEW" in node.status_reason
    assert (gpus[0].node_id, gpus[0].model_id) == (node.pk, "H100-80GB")
