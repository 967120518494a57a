"""What the nodes report (GPU samples, in a table partitioned by day) and what each grant used
(usage hours), and the findings operators and members act on (notices)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.models.grants import Grant
from allocations.models.nodes import Gpu, Node


class SampleBatch(models.Model):
    """One batch a node posted. (node, batch id) is unique: a resent batch is recognised and
    stored once, in the same transaction as its samples."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="sample_batches", verbose_name=_("node"))
    batch_id = models.CharField(_("batch id"), max_length=64)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    sample_count = models.PositiveIntegerField(_("GPU samples"))
    first_time = models.DateTimeField(_("first sample"))
    last_time = models.DateTimeField(_("last sample"))
    dropped_before = models.PositiveIntegerField(_("batches the node dropped before this one"), default=0)

    class Meta:
        verbose_name = _("sample batch")
        verbose_name_plural = _("sample batches")
        constraints = [models.UniqueConstraint(fields=["node", "batch_id"], name="sample_batch_once_per_node")]
        indexes = [models.Index(fields=["received_at"])]

    def __str__(self) -> str:
        return f"{self.node_id}/{self.batch_id}"


class GpuSample(models.Model):
    """One GPU at one moment. The table is created by migration SQL as a PostgreSQL table
    partitioned by day (`allocations.services.sample_partitions`), written only with COPY, so
    retention drops whole partitions instead of deleting rows. Django only reads it."""

    pk = models.CompositePrimaryKey("gpu_id", "time", "batch_id")
    time = models.DateTimeField(_("time"))
    node = models.ForeignKey(Node, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    gpu = models.ForeignKey(Gpu, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    batch = models.ForeignKey(SampleBatch, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    utilization = models.SmallIntegerField(_("utilisation %"), null=True)
    memory_utilization = models.SmallIntegerField(_("memory utilisation %"), null=True)
    memory_used_mib = models.IntegerField(_("memory used (MiB)"), null=True)
    power_w = models.FloatField(_("power (W)"), null=True)
    temperature_c = models.SmallIntegerField(_("temperature (°C)"), null=True)
    ecc_uncorrected = models.IntegerField(_("uncorrected ECC errors"), null=True)
    xid_errors = models.IntegerField(_("XID errors"), null=True)
    processes = models.JSONField(_("processes"), default=list)

    class Meta:
        managed = False
        db_table = "allocations_gpusample"
        verbose_name = _("GPU sample")
        verbose_name_plural = _("GPU samples")

    def __str__(self) -> str:
        return f"GPU {self.gpu_id} at {self.time}"


class UsageHour(models.Model):
    """What one grant used in one hour: assigned GPU-minutes (from its access intervals, the
    billing basis), average utilisation and energy (from its GPUs' samples). Rebuilt as a whole
    for an hour, so a rerun gives the same row and late samples are folded in."""

    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="usage_hours", verbose_name=_("grant"))
    hour = models.DateTimeField(_("hour"))
    gpu_minutes = models.PositiveIntegerField(_("assigned GPU-minutes"))
    sample_count = models.PositiveIntegerField(_("samples"), default=0)
    avg_utilization = models.FloatField(_("average utilisation %"), null=True)
    energy_wh = models.FloatField(_("energy (Wh)"), default=0)

    class Meta:
        verbose_name = _("usage hour")
        verbose_name_plural = _("usage hours")
        ordering = ["grant", "hour"]
        constraints = [models.UniqueConstraint(fields=["grant", "hour"], name="usage_hour_once_per_grant")]
        indexes = [models.Index(fields=["hour"])]

    def __str__(self) -> str:
        return f"grant {self.grant_id} {self.hour:%Y-%m-%d %H}h"

    @property
    def gpu_hours(self) -> float:
        """Assigned GPU-hours (DESIGN's name); stored as whole GPU-minutes, the billing unit."""
        return self.gpu_minutes / 60


class Notice(models.Model):
    """A finding someone must act on: an idle grant (its members), a process on a GPU not lent
    to its user, a node that stopped reporting (operators). `key` makes each finding once."""

    class Kind(models.TextChoices):
        IDLE = "idle", _("Idle GPUs")
        MISUSE = "misuse", _("Process on a GPU not assigned to its user")
        SILENT_NODE = "silent_node", _("Node stopped reporting")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    key = models.CharField(_("key"), max_length=200, unique=True)
    grant = models.ForeignKey(
        Grant, on_delete=models.CASCADE, null=True, blank=True, related_name="notices", verbose_name=_("grant")
    )
    node = models.ForeignKey(
        Node, on_delete=models.CASCADE, null=True, blank=True, related_name="notices", verbose_name=_("node")
    )
    gpu = models.ForeignKey(
        Gpu, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("GPU")
    )
    details = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("found at"), default=timezone.now)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("notice")
        verbose_name_plural = _("notices")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "resolved_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.key}"
