"""A real GPU node stand-in: OpenSSH's sshd on 127.0.0.1 with throwaway host keys, real sudo,
real useradd and a real jupyter server. Only NVML is replayed (no GPU on these machines).
The node itself is built by `allocations.devnode`, the same code as `make run`'s demo node.

Everything the fixtures create on the machine carries a random id (accounts `gpt<id>…`, the
agent, its config, the sudo rule) and is removed at the end of the session.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from allocations import devnode, ssh
from allocations.devnode import NodeHost, free_port, keygen, wait_for_port  # noqa: F401 - used by tests
from allocations.models import Node


@pytest.fixture(scope="session")
def node_host() -> NodeHost:
    if os.geteuid() != 0:
        pytest.skip("the sshd node stand-in needs root (useradd, sudo rules); CI runs as root")
    missing = devnode.missing_binaries()
    if missing:
        pytest.fail(f"missing {missing}: apt-get install openssh-server sudo (make test installs them as root)")
    rid = secrets.token_hex(3)
    base = Path(f"/run/gpu-portal-test-{rid}")
    layout = devnode.node_layout(
        prefix=f"gpt{rid}",
        base=base,
        run_dir=base / "run",
        port=free_port(),
        portal_key=str(base / "portal_ed25519"),
        # Test runs side by side on one machine must not hand out the same uids.
        unix_id_base=10_000_000 + secrets.randbelow(10_000) * 10_000,
    )
    host = devnode.node_prepare(layout)
    sshd = devnode.sshd_start(host)
    ssh.ensure_key_pair(host.portal_key)
    yield host
    devnode.sshd_stop(sshd)
    devnode.node_remove(host)


@pytest.fixture
def node_settings(settings, node_host):
    settings.PROVISIONING_SSH_KEY = node_host.portal_key
    settings.NODE_ACCOUNT_PREFIX = node_host.prefix
    settings.NODE_UNIX_ID_BASE = node_host.unix_id_base
    settings.NODE_UNIX_ID_MAX = node_host.id_max
    settings.PROVISIONING_BACKOFF_SECONDS = 1
    return settings


def bootstrap_node(node_host: NodeHost, hostname: str = "gpu-h100-test") -> Node:
    """What an operator does: register, pin the confirmed key, install the agent, read the GPUs."""
    return devnode.node_bootstrap(node_host, hostname=hostname)


@pytest.fixture
def gpu_node(db, node_settings, node_host) -> Node:
    return bootstrap_node(node_host)
