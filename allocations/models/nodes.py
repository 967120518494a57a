"""GPU models, nodes and their GPUs."""

from __future__ import annotations

from datetime import timedelta

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class GpuModel(models.TextChoices):
    """GPU models the centre lends. The value is what NVML's name is matched against."""

    A100_80GB = "A100-80GB", "NVIDIA A100 80GB"
    H100_80GB = "H100-80GB", "NVIDIA H100 80GB"
    H200_141GB = "H200-141GB", "NVIDIA H200 141GB"
    B200_180GB = "B200-180GB", "NVIDIA B200 180GB"


# GPUs per node for each model: a request for more GPUs than one node has cannot be placed.
GPUS_PER_NODE = {
    GpuModel.A100_80GB: 8,
    GpuModel.H100_80GB: 8,
    GpuModel.H200_141GB: 8,
    GpuModel.B200_180GB: 8,
}

hostname_validator = RegexValidator(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$",
    _("A host name has lower-case letters, digits, hyphens and dots."),
)
unix_name_validator = RegexValidator(r"^[a-z_][a-z0-9_-]{0,31}$", _("Not a valid unix user name."))
agent_path_validator = RegexValidator(r"^/[A-Za-z0-9/._-]{1,199}$", _("An absolute path of letters, digits, / . _ -."))


class Node(models.Model):
    """A GPU node. Only `allocations.services.node_status` sets `status`, following ALLOWED,
    with a NodeEvent per change; `status_source` says who set it, so automatic checks never
    undo an operator's drain or offline."""

    class Status(models.TextChoices):
        ONLINE = "online", _("Online")
        DRAINING = "draining", _("Draining")
        OFFLINE = "offline", _("Offline")

    class Source(models.TextChoices):
        OPERATOR = "operator", _("Operator")
        INVENTORY = "inventory", _("GPU inventory")
        CONNECTION = "connection", _("SSH connection")

    ALLOWED = {
        Status.ONLINE: {Status.DRAINING, Status.OFFLINE},
        Status.DRAINING: {Status.ONLINE, Status.OFFLINE},
        Status.OFFLINE: {Status.ONLINE, Status.DRAINING},
    }

    hostname = models.CharField(_("host name"), max_length=253, unique=True, validators=[hostname_validator])
    address = models.CharField(_("address"), max_length=253, help_text=_("IP address or DNS name for SSH."))
    ssh_port = models.PositiveIntegerField(
        _("SSH port"), default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    ssh_username = models.CharField(
        _("provisioning account"), max_length=32, default="gpprov", validators=[unix_name_validator]
    )
    host_key = models.TextField(
        _("pinned host key"), blank=True, help_text=_("Empty until an operator confirms the fetched key.")
    )
    host_key_fingerprint = models.CharField(_("host key fingerprint"), max_length=100, blank=True)
    gpu_model = models.CharField(_("GPU model"), max_length=32, choices=GpuModel.choices)
    agent_path = models.CharField(
        _("agent path"), max_length=200, default="/usr/local/sbin/gpu-portal-agent", validators=[agent_path_validator]
    )
    agent_version = models.CharField(_("agent version"), max_length=32, blank=True)
    agent_sha256 = models.CharField(_("agent SHA-256"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OFFLINE)
    status_reason = models.TextField(_("status reason"), blank=True)
    status_source = models.CharField(_("status set by"), max_length=16, choices=Source.choices, blank=True)
    last_report_at = models.DateTimeField(_("last report"), null=True, blank=True)
    # The node's bearer token for /api/v1/nodes/<hostname>/samples: only its SHA-256 is kept
    # (shown once when set; empty: the node may not post).
    samples_token_sha256 = models.CharField(_("samples token (SHA-256)"), max_length=64, blank=True)
    samples_token_set_at = models.DateTimeField(_("samples token set at"), null=True, blank=True)
    last_sample_at = models.DateTimeField(_("last sample"), null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("node")
        verbose_name_plural = _("nodes")
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    def can_transition(self, new: str) -> bool:
        return new in self.ALLOWED.get(self.status, set())


class NodeEvent(models.Model):
    """One change of a node's status: who (no actor: an automatic check), from, to, why, when."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey("portal.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    source = models.CharField(_("set by"), max_length=16, choices=Node.Source.choices, blank=True)
    old_status = models.CharField(_("from"), max_length=16, choices=Node.Status.choices)
    new_status = models.CharField(_("to"), max_length=16, choices=Node.Status.choices)
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(_("time"), default=timezone.now)

    class Meta:
        verbose_name = _("node event")
        verbose_name_plural = _("node events")
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["node", "created_at"])]

    def __str__(self) -> str:
        return f"{self.node_id}: {self.old_status} → {self.new_status}"


class Gpu(models.Model):
    """A GPU as NVML reports it; rows come from the agent's inventory, never typed by hand."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    index = models.PositiveSmallIntegerField(_("index"))
    uuid = models.CharField(_("UUID"), max_length=64, unique=True)
    model = models.CharField(_("GPU model"), max_length=32, choices=GpuModel.choices)
    memory_mib = models.PositiveIntegerField(_("memory (MiB)"))

    class Meta:
        verbose_name = _("GPU")
        verbose_name_plural = _("GPUs")
        ordering = ["node", "index"]
        constraints = [models.UniqueConstraint(fields=["node", "index"], name="gpu_unique_index_per_node")]

    def __str__(self) -> str:
        return f"{self.node.hostname}:{self.index}"


class NodeOperation(models.Model):
    """An operator's request that reaches a node over SSH (fetch the host key, read the GPU
    inventory, reconcile). A web request only creates this row; `node_operation_job` does the
    work, and the node's admin page shows the state and the result or error."""

    class Kind(models.TextChoices):
        FETCH_HOST_KEY = "fetch-host-key", _("Fetch the host key")
        INVENTORY = "inventory", _("Read the GPU inventory")
        RECONCILE = "reconcile", _("Reconcile")

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    # RUNNING → RUNNING: a worker killed mid-operation leaves it running; the retry runs it again.
    ALLOWED = {
        State.QUEUED: {State.RUNNING, State.FAILED},
        State.RUNNING: {State.RUNNING, State.SUCCEEDED, State.FAILED},
        State.SUCCEEDED: set(),
        State.FAILED: set(),
    }
    OPEN = frozenset({State.QUEUED, State.RUNNING})
    # An open operation older than this was lost (worker killed, job never delivered): it no
    # longer blocks a new one of the same kind.
    STALE_AFTER = timedelta(minutes=15)

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(_("operation"), max_length=32, choices=Kind.choices)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    actor = models.ForeignKey("portal.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    result = models.JSONField(_("result"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    # What the job has done so far ({"at", "text"}), shown live on the operation's admin page.
    steps = models.JSONField(_("steps"), default=list, blank=True)
    created_at = models.DateTimeField(_("queued at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("node operation")
        verbose_name_plural = _("node operations")
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["node", "kind", "state"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.node_id} ({self.get_state_display()})"

    @property
    def is_pending(self) -> bool:
        """Queued or running, and recent enough that a worker may still finish it."""
        return self.state in self.OPEN and self.created_at >= timezone.now() - self.STALE_AFTER
