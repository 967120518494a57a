"""Register a GPU node and pin its SSH host key after the operator confirms the fingerprint.
Prints in the operator's language (OperatorCommand)."""

from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from allocations import ssh
from allocations.models import GpuModel, Node
from allocations.services import nodes
from portal.errors import PortalError
from portal.management.operator import OperatorCommand


def where(node: Node) -> str:
    return f"{node.address}:{node.ssh_port}"


class Command(OperatorCommand):
    help = (
        "Register a node, fetch its host key and pin it once you confirm the SHA256 fingerprint "
        "(compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the node's console)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("hostname")
        parser.add_argument("address")
        parser.add_argument("--port", type=int, default=22)
        parser.add_argument("--user", default="gpprov", help="the node's restricted provisioning account")
        parser.add_argument("--gpu-model", required=True, help="the code of a GPU model (admin: GPU models)")
        parser.add_argument("--agent-path", default="")
        parser.add_argument(
            "--fingerprint", help="the fingerprint you verified out of band; pins without asking when it matches"
        )

    def handle(self, *args, **opts) -> None:
        if not GpuModel.objects.filter(pk=opts["gpu_model"]).exists():
            codes = ", ".join(GpuModel.objects.values_list("code", flat=True)) or _("none yet")
            raise CommandError(
                _("no GPU model %(model)r (known: %(codes)s); add it in the admin (GPU models) first")
                % {"model": opts["gpu_model"], "codes": codes}
            )
        node = Node.objects.filter(hostname=opts["hostname"]).first()
        if node is None:
            try:
                node = nodes.node_register(
                    hostname=opts["hostname"],
                    address=opts["address"],
                    ssh_port=opts["port"],
                    ssh_username=opts["user"],
                    gpu_model=opts["gpu_model"],
                    agent_path=opts["agent_path"],
                )
            except Exception as exc:
                raise CommandError(
                    _("cannot register %(host)s: %(error)s") % {"host": opts["hostname"], "error": exc}
                ) from exc
            self.stdout.write(_("Registered %(host)s (%(address)s).") % {"host": node.hostname, "address": where(node)})
        else:
            self.refuse_changes(node, opts)
        self.progress(
            1,
            2,
            _("%(host)s: fetching the host key from %(address)s") % {"host": node.hostname, "address": where(node)},
        )
        try:
            key_line = nodes.node_fetch_host_key(node=node)
        except ssh.SshError as exc:
            raise CommandError(exc.message) from exc
        fp = ssh.fingerprint(key_line)
        self.stdout.write(
            _("The node presents host key %(type)s %(fingerprint)s") % {"type": key_line.split()[0], "fingerprint": fp}
        )
        if node.host_key and node.host_key_fingerprint == fp:
            self.stdout.write(self.style.SUCCESS(_("This key is already pinned.")))
            return
        if node.host_key:
            self.stdout.write(
                self.style.WARNING(
                    _("A different key is pinned: %(fingerprint)s") % {"fingerprint": node.host_key_fingerprint}
                )
            )
        confirmed = opts["fingerprint"] or input(_("Type the fingerprint you verified on the node to pin it: "))
        self.progress(2, 2, _("%(host)s: pinning %(fingerprint)s") % {"host": node.hostname, "fingerprint": fp})
        try:
            nodes.node_pin_host_key(node=node, key_line=key_line, confirmed_fingerprint=confirmed)
        except PortalError as exc:
            raise CommandError(_("not pinned: %(reason)s") % {"reason": exc.message}) from exc
        self.stdout.write(
            self.style.SUCCESS(_("Pinned %(fingerprint)s for %(host)s.") % {"fingerprint": fp, "host": node.hostname})
        )

    def refuse_changes(self, node: Node, opts: dict) -> None:
        """A registered hostname with other settings: say which differ instead of quietly
        dropping what was typed (a node moves through the admin, where its key is re-pinned)."""
        typed = {
            "address": (node.address, opts["address"]),
            "--port": (node.ssh_port, opts["port"]),
            "--user": (node.ssh_username, opts["user"]),
            "--gpu-model": (node.gpu_model_id, opts["gpu_model"]),
            "--agent-path": (node.agent_path, opts["agent_path"] or node.agent_path),
        }
        differ = [
            _("%(option)s %(old)s (you typed %(new)s)") % {"option": name, "old": old, "new": new}
            for name, (old, new) in typed.items()
            if str(old) != str(new)
        ]
        if differ:
            raise CommandError(
                _(
                    "%(host)s is already registered with %(settings)s. Nothing was changed: change the node in"
                    " the admin (Nodes), or register the new machine under another hostname."
                )
                % {"host": node.hostname, "settings": ", ".join(differ)}
            )
