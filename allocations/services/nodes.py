"""Registering nodes: pinning host keys, installing the agent, reading the GPU inventory."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations import ssh
from allocations.gpu_models import UnknownGpuModel, gpu_models_by_nvml_name
from allocations.models import Assignment, Gpu, Node
from allocations.models.nodes import nvml_name_key
from allocations.node_install import DEFAULT_CONFIG_PATH, SshdSettings, installer_program
from allocations.services.node_status import node_report_inventory
from allocations.services.sample_tokens import node_samples_token_set
from portal.errors import PortalError


def target_for(node: Node, *, username: str | None = None) -> ssh.Target:
    return ssh.Target(
        address=node.address,
        port=node.ssh_port,
        username=username or node.ssh_username,
        host_key=node.host_key,
        agent_path=node.agent_path,
    )


def connect(node: Node) -> ssh.Connection:
    """An SSH connection as the node's restricted provisioning account."""
    return ssh.Connection(target_for(node), settings.PROVISIONING_SSH_KEY)


@transaction.atomic
def node_register(
    *, hostname: str, address: str, ssh_port: int, ssh_username: str, gpu_model: str, agent_path: str = ""
) -> Node:
    node = Node(
        hostname=hostname,
        address=address,
        ssh_port=ssh_port,
        ssh_username=ssh_username,
        gpu_model=gpu_model,
        **({"agent_path": agent_path} if agent_path else {}),
    )
    node.full_clean()
    node.save()
    return node


def node_fetch_host_key(*, node: Node) -> str:
    """The host key the node presents now (not trusted until an operator pins it)."""
    return ssh.fetch_host_key(node.address, node.ssh_port)


@transaction.atomic
def node_pin_host_key(*, node: Node, key_line: str, confirmed_fingerprint: str) -> Node:
    """Pin the key only when the operator confirmed exactly its fingerprint."""
    fp = ssh.fingerprint(key_line)
    if fp != confirmed_fingerprint.strip():
        raise PortalError(
            _("The fingerprint does not match: the node presents %(fp)s.") % {"fp": fp}, code="fingerprint_mismatch"
        )
    node = Node.objects.select_for_update().get(pk=node.pk)
    node.host_key = key_line.strip()
    node.host_key_fingerprint = fp
    node.save(update_fields=["host_key", "host_key_fingerprint"])
    return node


def node_install_agent(
    *,
    node: Node,
    operator_user: str,
    operator_key: str,
    provisioning_public_key: str,
    agent_config: dict,
    config_path: str = DEFAULT_CONFIG_PATH,
    sshd: SshdSettings | None = None,
    portal_url: str = "",
) -> dict:
    """Install or upgrade the agent with an operator credential (root, or a user with full
    sudo): the installer runs as root from stdin with the agent inside, checks its digest,
    writes the config, the provisioning account, the sudo rule (the agent's verbs only, pinned
    to its digest) and the sshd drop-in. Afterwards the portal only uses the restricted account.
    With `portal_url`, the node also gets a new samples token (in a root-only file, the only
    copy outside the portal's hash) and a timer that pushes samples every minute; the token
    counts only once the installer succeeded."""
    push = None
    if portal_url:
        token = secrets.token_urlsafe(32)
        url = portal_url.rstrip("/") + reverse("allocations:node_samples", args=[node.hostname])
        push = {"url": url, "token": token}
    program, _digest = installer_program(
        agent_path=node.agent_path,
        config_path=config_path,
        config=agent_config,
        provisioning_user=node.ssh_username,
        public_key=provisioning_public_key,
        sshd=sshd or SshdSettings(),
        push=push,
    )
    target = target_for(node, username=operator_user)
    with ssh.Connection(target, operator_key) as conn:
        answer = conn.run_python_as_root(program, use_sudo=operator_user != "root", what="install")
    Node.objects.filter(pk=node.pk).update(agent_version=answer["version"], agent_sha256=answer["sha256"])
    if push:
        node_samples_token_set(node=node, token=push["token"])
    return answer


def _lent_elsewhere(node: Node, uuids: list[str]) -> dict[str, str]:
    """uuid → hostname of the reported GPUs that another node holds with an assignment not yet
    ended: a report never moves those (a node listing another's UUIDs would take its GPUs, its
    samples and its grants' provisioning). A GPU moved between nodes while free still moves."""
    now = timezone.now()
    return dict(
        Assignment.objects.filter(gpu__uuid__in=uuids, period__overlap=DateTimeTZRange(now, None, "[)"))
        .exclude(gpu__node_id=node.pk)
        .values_list("gpu__uuid", "gpu__node__hostname")
    )


@transaction.atomic
def node_record_inventory(*, node: Node, inventory: dict) -> list[Gpu]:
    """Store what NVML reported. GPU rows are never typed by hand; a GPU that disappeared from
    the report keeps its row (assignments refer to it) but the node says why. The status follows
    the report only where no operator decided otherwise (node_report_inventory)."""
    node = Node.objects.select_for_update().get(pk=node.pk)
    gpus = []
    unknown = []
    ambiguous = []
    by_name = gpu_models_by_nvml_name()
    lent_elsewhere = _lent_elsewhere(node, [item["uuid"] for item in inventory["gpus"]])
    claimed = []
    mismatched = []
    for item in inventory["gpus"]:
        if item["uuid"] in lent_elsewhere:
            claimed.append(f"{item['uuid']} (lent on {lent_elsewhere[item['uuid']]})")
            continue
        key = nvml_name_key(item["name"])
        model = by_name.get(key)
        if model is None:
            (ambiguous if key in by_name else unknown).append(item["name"])
            continue
        if model.pk != node.gpu_model_id:
            # Not written: an operator moving an NVML name to another model must not relabel
            # GPUs lent to grants of their model; the node goes offline and says why.
            mismatched.append(model.pk)
            continue
        gpu, _created = Gpu.objects.update_or_create(
            uuid=item["uuid"],
            defaults={"node": node, "index": item["index"], "model": model, "memory_mib": item["memory_mib"]},
        )
        gpus.append(gpu)
    problem = "" if gpus else "no GPU reported"
    if unknown or ambiguous:
        problem = str(UnknownGpuModel(sorted(set(unknown)), sorted(set(ambiguous))))
    if mismatched:
        problem = f"node is registered as {node.gpu_model_id} but reports {mismatched[0]}"
    if claimed:
        problem = f"reports GPUs registered on another node: {', '.join(claimed)}"
    node.last_report_at = timezone.now()
    node.save(update_fields=["last_report_at"])
    node_report_inventory(node=node, problem=problem)
    return gpus


def node_inventory(*, node: Node) -> list[Gpu]:
    with connect(node) as conn:
        answer = conn.agent("inventory")
        version = conn.agent("version")["version"]
    Node.objects.filter(pk=node.pk).update(agent_version=version)
    return node_record_inventory(node=node, inventory=answer)
