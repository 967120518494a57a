"""Install (or upgrade) the node agent with an operator credential, then read the GPU inventory
through the restricted provisioning account. Prints in the operator's language (OperatorCommand)."""

from django.conf import settings
from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from allocations import ssh
from allocations.agent.gpu_portal_agent.common import relative_path_settings
from allocations.models import Node
from allocations.node_install import DEFAULT_CONFIG_PATH, SshdSettings
from allocations.services import nodes
from allocations.services.node_status import node_report_inventory
from portal.management.operator import OperatorCommand

NVML_ERRORS = {"nvml_missing", "nvml_unavailable"}
NO_NVML = gettext_lazy(
    "The agent is installed on %(node)s but cannot read its GPUs (%(error)s); the node stays offline with"
    " that reason. Install the NVIDIA driver and nvidia-ml-py for the node's system python3 (docs/nodes.md,"
    " step 1) and run install_agent again. A test or demo machine without GPUs can replay a recorded NVML"
    " answer instead: --nvml-replay /ABSOLUTE/PATH (a file on the node given by its absolute path, e.g."
    " /etc/gpu-portal/h100-sxm-8.json, a copy of tests/fixtures/nvml/h100-sxm-8.json)."
)


class Command(OperatorCommand):
    help = "Bootstrap a registered node (agent, provisioning account, sudo rule) and read its GPUs."

    def add_arguments(self, parser) -> None:
        parser.add_argument("hostname")
        parser.add_argument("--operator-user", default="root", help="root, or a user with full sudo")
        parser.add_argument("--operator-key", required=True, help="private key of the operator credential")
        parser.add_argument("--config-path", default=DEFAULT_CONFIG_PATH)
        parser.add_argument("--jupyter-bin", default="/opt/gpu-portal/jupyter/bin/jupyter")
        parser.add_argument("--state-dir", default="/var/lib/gpu-portal-agent")
        parser.add_argument("--jupyter-run-dir", default="/run/gpu-portal-jupyter", help="users' Jupyter sockets")
        parser.add_argument("--nvml-replay", default="", help="recorded NVML output (test nodes without GPUs)")
        parser.add_argument("--keys-dir", default="/etc/gpu-portal/authorized_keys")
        parser.add_argument("--managed-group", default="gpu-portal-users")
        parser.add_argument("--gpu-device-pattern", default="/dev/nvidia{minor}")
        parser.add_argument(
            "--portal-url",
            default=None,
            help="where the node posts samples (default SITE_URL); the node gets a new samples token",
        )
        parser.add_argument("--no-push", action="store_true", help="do not set up sending samples")
        parser.add_argument("--push-config", default="/etc/gpu-portal/push.json", help="root-only URL+token file")
        parser.add_argument("--sshd-config", default=SshdSettings.config)
        parser.add_argument("--sshd-dropin", default=SshdSettings.dropin)
        parser.add_argument("--sshd-pid-file", default=SshdSettings.pid_file)

    def handle(self, *args, **opts) -> None:
        node = Node.objects.filter(hostname=opts["hostname"]).first()
        if node is None:
            raise CommandError(_("unknown node %(host)s: register it with add_node first") % {"host": opts["hostname"]})
        if not node.host_key:
            raise CommandError(_("%(host)s has no pinned host key: run add_node first") % {"host": node.hostname})
        agent_config = {
            "account_prefix": settings.NODE_ACCOUNT_PREFIX,
            "jupyter_bin": opts["jupyter_bin"],
            "state_dir": opts["state_dir"],
            "jupyter_run_dir": opts["jupyter_run_dir"],
            "nvml_replay": opts["nvml_replay"],
            "keys_dir": opts["keys_dir"],
            "managed_group": opts["managed_group"],
            "gpu_device_pattern": opts["gpu_device_pattern"],
            "push_config": opts["push_config"],
            # The only uids the agent will create: the portal's own range.
            "id_min": settings.NODE_UNIX_ID_BASE + 1,
            "id_max": settings.NODE_UNIX_ID_MAX,
        }
        relative = relative_path_settings(agent_config)
        if relative:  # the agent would refuse every verb (bad_config): refused before touching the node
            raise CommandError(
                _(
                    "--%(option)s must be an absolute path on the node, not %(value)r: the agent refuses a"
                    " configuration with a relative path."
                )
                % {"option": relative[0].replace("_", "-"), "value": agent_config[relative[0]]}
            )
        try:
            public_key = ssh.ensure_key_pair(settings.PROVISIONING_SSH_KEY)
            self.progress(
                1,
                2,
                _("%(host)s: installing the agent as %(user)s")
                % {"host": node.hostname, "user": opts["operator_user"]},
            )
            answer = nodes.node_install_agent(
                node=node,
                operator_user=opts["operator_user"],
                operator_key=opts["operator_key"],
                provisioning_public_key=public_key,
                config_path=opts["config_path"],
                agent_config=agent_config,
                portal_url="" if opts["no_push"] else (opts["portal_url"] or settings.SITE_URL),
                sshd=SshdSettings(
                    config=opts["sshd_config"], dropin=opts["sshd_dropin"], pid_file=opts["sshd_pid_file"]
                ),
            )
            self.stdout.write(
                _("Agent %(version)s installed (sha256 %(sha256)s).")
                % {"version": answer["version"], "sha256": answer["sha256"]}
            )
            self.stdout.write(_("Samples: %(push)s.") % {"push": answer.get("push") or _("not configured")})
            self.progress(
                2, 2, _("%(host)s: reading the GPUs as %(user)s") % {"host": node.hostname, "user": node.ssh_username}
            )
            gpus = nodes.node_inventory(node=node)
        except ssh.SshError as exc:
            if exc.code in NVML_ERRORS:
                node_report_inventory(node=node, problem=f"the agent cannot read the GPUs: {exc.message}")
                raise CommandError(NO_NVML % {"node": node.hostname, "error": exc.message}) from exc
            raise CommandError(exc.message) from exc
        node.refresh_from_db()
        found = ngettext(
            "%(host)s: %(count)d GPU, status %(status)s.", "%(host)s: %(count)d GPUs, status %(status)s.", len(gpus)
        )
        self.stdout.write(
            self.style.SUCCESS(found % {"host": node.hostname, "count": len(gpus), "status": node.status})
        )
        if node.status_reason:
            self.stdout.write(self.style.WARNING(node.status_reason))
        self.stdout.write(self.done())
