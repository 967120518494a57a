"""seed_demo's part for the demo GPU node that `make run` starts on this machine: register it,
pin its host key, install the agent through the real installer, give the demo researcher an SSH
key, and bring the node back in line with the database (after `make clean-demo`, the accounts of
active grants are created again). Development only: seed_demo refuses production."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from allocations import devnode, ssh
from allocations.jobs import grants_place_pending_job
from allocations.models import Node, SshKey
from allocations.services.grants import reconcile_node
from allocations.services.keys import sshkey_add
from portal.errors import PortalError
from portal.models import User

DEMO_NODE_HOSTNAME = "gpu-demo-01"
DEMO_NODE_MODEL = "H100-80GB"
DEMO_RESEARCHER = "researcher@demo-univ.ac.kr"


def seed_demo_node(node_file: Path, out, style) -> Node:
    host = devnode.NodeHost.from_json(node_file.read_text())
    if settings.NODE_ACCOUNT_PREFIX != host.prefix:
        raise CommandError(
            f"NODE_ACCOUNT_PREFIX is {settings.NODE_ACCOUNT_PREFIX!r} but the demo node manages {host.prefix!r}"
        )
    try:
        node = devnode.node_bootstrap(host, hostname=DEMO_NODE_HOSTNAME, gpu_model=DEMO_NODE_MODEL)
    except (ssh.SshError, PortalError) as exc:
        raise CommandError(f"the demo node could not be set up: {exc.message}") from exc
    key_path = host.base / "researcher_ed25519"
    public = devnode.keygen(key_path, comment=DEMO_RESEARCHER)
    researcher = User.objects.get(email=DEMO_RESEARCHER)
    if not SshKey.objects.filter(user=researcher, public_key=" ".join(public.split()[:2])).exists():
        sshkey_add(user=researcher, text=public, name="demo key (make run)")
    repairs = reconcile_node(node=node)
    placed = grants_place_pending_job()
    out.write(
        style.SUCCESS(
            f"Demo GPU node {node.hostname}: {node.gpus.count()} × {node.gpu_model} at {node.address}:{node.ssh_port},"
            f" status {node.status}, host key {node.host_key_fingerprint} (pinned)."
        )
    )
    if node.status_reason:
        out.write(style.WARNING(f"  {node.status_reason}"))
    if repairs or placed:
        out.write(f"  Brought in line with the database: {len(repairs)} repairs queued, {len(placed)} grants placed.")
    out.write(
        f"  {DEMO_RESEARCHER} has the SSH key {key_path} (registered in the portal). Once a grant is"
        f" active, its page shows the login; from this machine:\n"
        f"    ssh -i {key_path} -p {node.ssh_port} {settings.NODE_ACCOUNT_PREFIX}<number>@{node.address}"
    )
    return node
