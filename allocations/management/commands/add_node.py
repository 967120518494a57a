"""Register a GPU node and pin its SSH host key after the operator confirms the fingerprint."""

from django.core.management.base import CommandError

from allocations import ssh
from allocations.models import GpuModel, Node
from allocations.services import nodes
from portal.errors import PortalError
from portal.management.operator import OperatorCommand


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
            codes = ", ".join(GpuModel.objects.values_list("code", flat=True)) or "none yet"
            raise CommandError(
                f"no GPU model {opts['gpu_model']!r} (known: {codes}); add it in the admin (GPU models) first"
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
                raise CommandError(f"cannot register {opts['hostname']}: {exc}") from exc
            self.stdout.write(f"Registered {node.hostname} ({node.address}:{node.ssh_port}).")
        else:
            self.refuse_changes(node, opts)
        self.progress(1, 2, f"{node.hostname}: fetching the host key from {node.address}:{node.ssh_port}")
        try:
            key_line = nodes.node_fetch_host_key(node=node)
        except ssh.SshError as exc:
            raise CommandError(exc.message) from exc
        fp = ssh.fingerprint(key_line)
        self.stdout.write(f"The node presents host key {key_line.split()[0]} {fp}")
        if node.host_key and node.host_key_fingerprint == fp:
            self.stdout.write(self.style.SUCCESS("This key is already pinned."))
            return
        if node.host_key:
            self.stdout.write(self.style.WARNING(f"A different key is pinned: {node.host_key_fingerprint}"))
        confirmed = opts["fingerprint"] or input("Type the fingerprint you verified on the node to pin it: ")
        self.progress(2, 2, f"{node.hostname}: pinning {fp}")
        try:
            nodes.node_pin_host_key(node=node, key_line=key_line, confirmed_fingerprint=confirmed)
        except PortalError as exc:
            raise CommandError(f"not pinned: {exc.message}") from exc
        self.stdout.write(self.style.SUCCESS(f"Pinned {fp} for {node.hostname}."))

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
        differ = [f"{name} {old} (you typed {new})" for name, (old, new) in typed.items() if str(old) != str(new)]
        if differ:
            raise CommandError(
                f"{node.hostname} is already registered with {', '.join(differ)}. Nothing was changed: "
                "change the node in the admin (Nodes), or register the new machine under another hostname."
            )
