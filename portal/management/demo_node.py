"""seed_demo's part for the demo GPU node that `make run` starts on this machine: register it,
pin its host key, install the agent through the real installer, give the demo researcher an SSH
key, and bring the node back in line with the database (after `make clean-demo`, the accounts of
active grants are created again). Development only: seed_demo refuses production."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from allocations import devnode, ssh
from allocations.jobs import grants_place_pending_job
from allocations.keys import parse_public_key
from allocations.models import Node, SshKey
from allocations.services.grants import reconcile_node
from allocations.services.keys import sshkey_add, sshkey_remove
from portal.errors import PortalError
from portal.models import User

DEMO_NODE_HOSTNAME = "gpu-demo-01"
DEMO_NODE_MODEL = "H100-80GB"
DEMO_RESEARCHER = "researcher@demo-univ.ac.kr"
DEMO_KEY_NAME = "demo key (make run)"


def demo_researcher_key(host: devnode.NodeHost) -> Path:
    """The demo researcher's key pair beside the node (a new one after `make clean-demo`),
    registered in the portal in place of an earlier demo key."""
    key_path = host.base / "researcher_ed25519"
    public = devnode.keygen(key_path, comment=DEMO_RESEARCHER)
    fingerprint = parse_public_key(public).fingerprint
    researcher = User.objects.get(email=DEMO_RESEARCHER)
    for old in SshKey.objects.filter(user=researcher, name=DEMO_KEY_NAME).exclude(fingerprint=fingerprint):
        sshkey_remove(ssh_key=old)
    if not SshKey.objects.filter(user=researcher, fingerprint=fingerprint).exists():
        sshkey_add(user=researcher, text=public, name=DEMO_KEY_NAME)
    return key_path


def seed_demo_node(node_file: Path, out, style) -> Node:
    host = devnode.NodeHost.from_json(node_file.read_text())
    if settings.NODE_ACCOUNT_PREFIX != host.prefix:
        raise CommandError(
            _("NODE_ACCOUNT_PREFIX is %(setting)r but the demo node manages %(prefix)r")
            % {"setting": settings.NODE_ACCOUNT_PREFIX, "prefix": host.prefix}
        )
    if (settings.NODE_UNIX_ID_BASE, settings.NODE_UNIX_ID_MAX) != (host.unix_id_base, host.id_max):
        raise CommandError(
            _("NODE_UNIX_ID_BASE and NODE_UNIX_ID_MAX are %(base)s and %(max)s but the demo node's uids are %(uids)s")
            % {
                "base": settings.NODE_UNIX_ID_BASE,
                "max": settings.NODE_UNIX_ID_MAX,
                "uids": f"{host.unix_id_base + 1}-{host.id_max}",
            }
        )
    try:
        # Samples go to the running portal, as a real node's push timer sends them (make run
        # runs the agent's push every minute in place of the timer).
        node = devnode.node_bootstrap(
            host, hostname=DEMO_NODE_HOSTNAME, gpu_model=DEMO_NODE_MODEL, portal_url=settings.SITE_URL
        )
        # Repairs first: a key change queues key updates, which must come after a missing account.
        repairs = reconcile_node(node=node)
    except (ssh.SshError, PortalError) as exc:
        raise CommandError(_("the demo node could not be set up: %(reason)s") % {"reason": exc.message}) from exc
    key_path = demo_researcher_key(host)
    placed = grants_place_pending_job()
    out.write(
        style.SUCCESS(
            _(
                "Demo GPU node %(host)s: %(count)s × %(model)s at %(address)s, status %(status)s,"
                " host key %(fingerprint)s (pinned)."
            )
            % {
                "host": node.hostname,
                "count": node.gpus.count(),
                "model": node.gpu_model_id,
                "address": f"{node.address}:{node.ssh_port}",
                "status": node.status,
                "fingerprint": node.host_key_fingerprint,
            }
        )
    )
    if node.status_reason:
        out.write(style.WARNING(f"  {node.status_reason}"))
    if repairs or placed:
        queued = ngettext("%(count)d repair queued", "%(count)d repairs queued", len(repairs)) % {"count": len(repairs)}
        grants = ngettext("%(count)d grant placed", "%(count)d grants placed", len(placed)) % {"count": len(placed)}
        out.write(
            "  "
            + _("Brought in line with the database: %(repairs)s, %(grants)s.") % {"repairs": queued, "grants": grants}
        )
    out.write(
        "  "
        + _(
            "%(user)s has the SSH key %(key)s (registered in the portal). Once a grant is active, its page"
            " shows the login; from this machine:"
        )
        % {"user": DEMO_RESEARCHER, "key": key_path}
        + f"\n    ssh -i {key_path} -p {node.ssh_port} {settings.NODE_ACCOUNT_PREFIX}<number>@{node.address}"
    )
    again = devnode.install_agent_args(host, node.hostname, portal_url=settings.SITE_URL)
    out.write(
        "  "
        + _(
            "The operator's commands work on it too (docs/nodes.md), e.g. installing the agent again"
            " (exactly as above: its push file stays in the node's config folder):"
        )
        + f'\n    make manage ARGS="{" ".join(again)}"'
    )
    return node
