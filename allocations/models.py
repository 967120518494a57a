"""GPU nodes, their GPUs and grants. Assignments, node accounts, Jupyter sessions and
provisioning tasks join this module with the access issue."""

from __future__ import annotations

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


class Node(models.Model):
    class Status(models.TextChoices):
        ONLINE = "online", _("Online")
        DRAINING = "draining", _("Draining")
        OFFLINE = "offline", _("Offline")

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
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OFFLINE)
    last_report_at = models.DateTimeField(_("last report"), null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("node")
        verbose_name_plural = _("nodes")
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname


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


class Grant(models.Model):
    """An award: created in `pending` when an application is approved. Only services set
    `status`, following ALLOWED, with a GrantEvent per transition."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PROVISIONING = "provisioning", _("Provisioning")
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")
        EXPIRED = "expired", _("Expired")
        REVOKED = "revoked", _("Revoked")

    ALLOWED = {
        Status.PENDING: {Status.PROVISIONING, Status.REVOKED},
        Status.PROVISIONING: {Status.ACTIVE, Status.PENDING, Status.REVOKED},
        Status.ACTIVE: {Status.SUSPENDED, Status.EXPIRED, Status.REVOKED},
        Status.SUSPENDED: {Status.ACTIVE, Status.EXPIRED, Status.REVOKED},
        Status.EXPIRED: set(),
        Status.REVOKED: set(),
    }
    # Grants in these states count against their call's budget.
    COMMITTED = frozenset({Status.PENDING, Status.PROVISIONING, Status.ACTIVE, Status.SUSPENDED, Status.EXPIRED})

    organisation = models.ForeignKey(
        "portal.Organisation", on_delete=models.PROTECT, related_name="grants", verbose_name=_("organisation")
    )
    application = models.OneToOneField(
        "portal.Application", on_delete=models.PROTECT, related_name="grant", verbose_name=_("application")
    )
    gpu_model = models.CharField(_("GPU model"), max_length=32, choices=GpuModel.choices)
    gpu_count = models.PositiveSmallIntegerField(_("GPUs"), validators=[MinValueValidator(1)])
    gpu_hours = models.PositiveIntegerField(_("subsidised GPU-hours"), validators=[MinValueValidator(1)])
    copay_percent = models.PositiveSmallIntegerField(_("co-payment percent"), validators=[MaxValueValidator(100)])
    starts_on = models.DateField(_("start"))
    ends_on = models.DateField(_("end"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    status_reason = models.TextField(_("status reason"), blank=True)
    budget_override_reason = models.TextField(_("budget override reason"), blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("grant")
        verbose_name_plural = _("grants")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_on__gt=models.F("starts_on")), name="grant_dates_ordered"),
            models.CheckConstraint(condition=models.Q(gpu_hours__gt=0), name="grant_hours_positive"),
            models.CheckConstraint(condition=models.Q(gpu_count__gt=0), name="grant_gpus_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.gpu_count}× {self.gpu_model} ({self.get_status_display()})"


class GrantEvent(models.Model):
    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey("portal.User", on_delete=models.SET_NULL, null=True, related_name="+")
    old_status = models.CharField(max_length=16, choices=Grant.Status.choices, blank=True)
    new_status = models.CharField(max_length=16, choices=Grant.Status.choices)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.grant_id}: {self.old_status} → {self.new_status}"
