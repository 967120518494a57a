"""GPU models, nodes and their GPUs."""

from __future__ import annotations

from datetime import timedelta
from functools import partialmethod

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connection, models
from django.db.models.fields.related_descriptors import ForwardManyToOneDescriptor
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

gpu_model_code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$", _("A code has letters, digits, dots, hyphens and underscores.")
)


def nvml_name_key(name: str) -> str:
    """How NVML product names are compared: whitespace collapsed, case ignored."""
    return " ".join(name.split()).casefold()


class GpuModel(models.Model):
    """A GPU generation the centre lends: a row an operator adds in the admin (no migration).
    Nodes, GPUs, calls, applications, grants, rates and hour packs refer to it by `code` (the
    primary key, never changed); a row in use cannot be deleted (PROTECT). An NVML product name
    maps to at most one row (compared by `nvml_name_key`; checked in `clean`)."""

    code = models.CharField(
        _("code"),
        max_length=32,
        primary_key=True,
        validators=[gpu_model_code_validator],
        help_text=_("Short and permanent, e.g. H100-80GB."),
    )
    name = models.CharField(_("name"), max_length=100, help_text=_("Shown to users, e.g. NVIDIA H100 80GB."))
    memory_gib = models.PositiveIntegerField(_("memory (GiB)"), validators=[MinValueValidator(1)])
    gpus_per_node = models.PositiveSmallIntegerField(
        _("GPUs per node"),
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text=_("A request for more GPUs than one node has cannot be placed."),
    )
    nvml_names = ArrayField(
        models.CharField(max_length=100),
        verbose_name=_("NVML product names"),
        default=list,
        blank=True,
        help_text=_("Names NVML reports for this model, comma-separated, e.g. NVIDIA H100 80GB HBM3."),
    )
    active = models.BooleanField(
        _("offered"),
        default=True,
        help_text=_("Choosable for new call budgets and rates; what already refers to it keeps working."),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("GPU model")
        verbose_name_plural = _("GPU models")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.nvml_names = [" ".join(n.split()) for n in self.nvml_names if n.strip()]
        keys = [nvml_name_key(n) for n in self.nvml_names]
        if len(set(keys)) != len(keys):
            raise ValidationError({"nvml_names": _("An NVML name is listed twice.")})
        if connection.in_atomic_block:
            # The admin checks and saves in one transaction: holding the table (a mode that
            # conflicts with itself) until it commits makes a second save at once wait and then
            # see this one's names, instead of both passing the check.
            with connection.cursor() as cur:
                cur.execute(f"LOCK TABLE {GpuModel._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        for other in GpuModel.objects.exclude(pk=self.pk).only("code", "nvml_names"):
            taken = {nvml_name_key(n) for n in other.nvml_names}.intersection(keys)
            if taken:
                raise ValidationError(
                    {
                        "nvml_names": _("%(names)s already maps to %(model)s.")
                        % {"names": ", ".join(sorted(taken)), "model": other.code}
                    }
                )


class GpuModelDescriptor(ForwardManyToOneDescriptor):
    """`obj.gpu_model = "H100-80GB"` sets the code (`gpu_model_id`), as the text field it replaced
    accepted; a GpuModel row is assigned as usual."""

    def __set__(self, instance, value):
        if isinstance(value, str):
            if self.field.is_cached(instance):
                self.field.delete_cached_value(instance)
            setattr(instance, self.field.attname, value or None)
            return
        super().__set__(instance, value)


def _gpu_model_display(obj: models.Model, attname: str) -> str:
    """`get_gpu_model_display()`: the model's name without a query per object (as the text
    field with choices it replaced did)."""
    from allocations.gpu_models import gpu_model_label

    return gpu_model_label(getattr(obj, attname))


class GpuModelField(models.ForeignKey):
    """A reference to a GpuModel row by code, kept in the column of the text field it replaced
    (`db_column`); deleting a row in use is refused (PROTECT)."""

    forward_related_accessor_class = GpuModelDescriptor

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("to", "allocations.GpuModel")
        kwargs.setdefault("on_delete", models.PROTECT)
        kwargs.setdefault("verbose_name", _("GPU model"))
        kwargs.setdefault("related_name", "+")
        super().__init__(*args, **kwargs)

    def contribute_to_class(self, cls, name, *args, **kwargs):
        super().contribute_to_class(cls, name, *args, **kwargs)
        if not cls._meta.abstract:
            setattr(cls, f"get_{name}_display", partialmethod(_gpu_model_display, attname=self.attname))

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.ForeignKey", args, kwargs


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
    gpu_model = GpuModelField(db_column="gpu_model")
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
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

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

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="events", verbose_name=_("node"))
    actor = models.ForeignKey(
        "portal.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("actor")
    )
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
        return f"{self.get_old_status_display() or '–'} → {self.get_new_status_display()}"


class Gpu(models.Model):
    """A GPU as NVML reports it; rows come from the agent's inventory, never typed by hand."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus", verbose_name=_("node"))
    index = models.PositiveSmallIntegerField(_("index"))
    uuid = models.CharField(_("UUID"), max_length=64, unique=True)
    model = GpuModelField(db_column="model")
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

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="operations", verbose_name=_("node"))
    kind = models.CharField(_("operation"), max_length=32, choices=Kind.choices)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    actor = models.ForeignKey(
        "portal.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("actor")
    )
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
        return _("%(kind)s on node #%(node)s (%(state)s)") % {
            "kind": self.get_kind_display(), "node": self.node_id, "state": self.get_state_display(),
        }  # fmt: skip

    @property
    def is_pending(self) -> bool:
        """Queued or running, and recent enough that a worker may still finish it."""
        return self.state in self.OPEN and self.created_at >= timezone.now() - self.STALE_AFTER
