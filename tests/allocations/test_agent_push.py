"""The agent's `sample` and `push` on the sshd node stand-in (installed through the installer,
NVML replayed) against the live test server: real HTTP, the node's real token."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import time
from pathlib import Path

import pytest

from allocations import ssh
from allocations.agent import gpu_portal_agent as agent
from allocations.models import GpuSample, Node, SampleBatch
from allocations.services import nodes as node_services
from allocations.services.sample_partitions import forget_known_partitions
from allocations.services.sample_tokens import node_samples_token_revoke
from tests.allocations.conftest import bootstrap_node

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pushing_node(node_settings, node_host, live_server):
    """The node bootstrapped by an operator with the live server as its portal; its spool is
    empty at the start and the samples table is left clean at the end."""
    forget_known_partitions()
    spool = Path(node_host.state_dir) / "spool"
    for leftover in spool.glob("*.json") if spool.exists() else []:
        leftover.unlink()
    Path(node_host.state_dir, "spool-counters.json").unlink(missing_ok=True)
    node = bootstrap_node(node_host)
    install = node_services.node_install_agent(
        node=node,
        operator_user="root",
        operator_key=node_host.operator_key,
        provisioning_public_key=ssh.ensure_key_pair(node_host.portal_key),
        config_path=node_host.config_path,
        agent_config=node_host.agent_config(),
        sshd=node_host.sshd,
        portal_url=live_server.url,
    )
    node.refresh_from_db()
    yield node, install
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("DELETE FROM allocations_gpusample")


def as_root(node: Node, node_host, command: str) -> dict:
    """What root's systemd timer runs on the node: the agent itself, no sudo."""
    target = node_services.target_for(node, username="root")
    with ssh.Connection(target, node_host.operator_key) as conn:
        _stdin, stdout, _stderr = conn.client.exec_command(command, timeout=60)
        out = stdout.read().decode()
        stdout.channel.recv_exit_status()
    return json.loads(out.strip().splitlines()[-1])


def push(node: Node, node_host) -> dict:
    return as_root(node, node_host, f"{shlex.quote(node_host.agent_path)} push </dev/null")


def test_the_installer_gives_the_node_a_token_and_says_there_is_no_systemd_here(pushing_node, node_host):
    node, install = pushing_node
    assert node.samples_token_sha256
    assert "systemd is not running" in install["push"]
    push_file = Path(node_host.agent_config()["push_config"])
    assert push_file.stat().st_mode & 0o777 == 0o600 and push_file.stat().st_uid == 0
    assert json.loads(push_file.read_text())["url"].endswith(f"/api/v1/nodes/{node.hostname}/samples")


def test_sample_reports_every_gpu_of_the_replayed_node(pushing_node):
    node, _install = pushing_node
    with node_services.connect(node) as conn:
        answer = conn.agent("sample")
    assert len(answer["gpus"]) == 8
    first = answer["gpus"][0]
    assert first["utilization"] == 97 and first["power_w"] > 0 and first["temperature_c"] > 0
    assert abs(answer["time"] - time.time()) < 60


def test_push_sends_a_batch_the_portal_stores(pushing_node, node_host):
    node, _install = pushing_node
    answer = push(node, node_host)
    assert answer["ok"] and answer["sent"] == 1 and answer["queued"] == 0, answer
    assert GpuSample.objects.filter(node_id=node.pk).count() == 8
    assert sorted(GpuSample.objects.values_list("utilization", flat=True))[-1] == 100


def test_the_provisioning_account_cannot_make_the_node_push(pushing_node, node_host):
    node, _install = pushing_node
    with node_services.connect(node) as conn:
        status, _out, _err = conn._exec(f"sudo -n {shlex.quote(node_host.agent_path)} push", b"{}", 30)
    assert status != 0
    assert GpuSample.objects.count() == 0


def test_a_node_offline_for_an_hour_catches_up_in_order(pushing_node, node_host):
    """An hour of batches queued on the node while the portal was unreachable (written as the
    agent writes them), two more failed pushes, then the portal is back: everything arrives."""
    node, _install = pushing_node
    push_file = Path(node_host.agent_config()["push_config"])
    good = push_file.read_text()
    config = {**agent.DEFAULT_CONFIG, **node_host.agent_config()}
    sample = agent.verb_sample({}, config)
    start = time.time() - 3600
    for minute in range(60):
        agent.spool_batch(
            config,
            {
                "batch_id": secrets.token_hex(16),
                "agent_version": agent.VERSION,
                "samples": [{"time": start + minute * 60, "gpus": sample["gpus"]}],
            },
        )
    push_file.write_text(json.dumps({**json.loads(good), "url": "http://127.0.0.1:9/api/v1/nodes/x/samples"}))
    try:
        for expected in (61, 62):
            offline = push(node, node_host)
            assert offline["sent"] == 0 and offline["queued"] == expected, offline
    finally:
        push_file.write_text(good)
    back = push(node, node_host)
    assert back["sent"] == 63 and back["queued"] == 0, back
    assert SampleBatch.objects.filter(node=node).count() == 63
    assert GpuSample.objects.filter(node_id=node.pk).count() == 63 * 8
    node.refresh_from_db()
    assert time.time() - node.last_sample_at.timestamp() < 60


def test_a_revoked_token_keeps_batches_on_the_node(pushing_node, node_host):
    node, _install = pushing_node
    node_samples_token_revoke(node=node)
    answer = push(node, node_host)
    assert answer["sent"] == 0 and answer["queued"] == 1 and answer["error"].startswith("401")
    assert GpuSample.objects.count() == 0


def test_the_spool_is_bounded_and_counts_what_it_dropped(tmp_path):
    config = {**agent.DEFAULT_CONFIG, "state_dir": str(tmp_path / "state"), "spool_max": 5}
    for minute in range(8):
        agent.spool_batch(
            config, {"batch_id": f"b{minute:07d}", "samples": [{"time": 1_700_000_000 + minute * 60, "gpus": []}]}
        )
    left = sorted(os.listdir(tmp_path / "state/spool"))
    assert len(left) == 5
    assert left[0].endswith("b0000003.json")  # the oldest went first
    assert json.loads((tmp_path / "state/spool-counters.json").read_text())["dropped"] == 3
