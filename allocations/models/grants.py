"""Grants (awards) and their GPU assignments."""

from __future__ import annotations

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeOperators
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import formats, timezone
from django.utils.translation import gettext_lazy as _

from allocations.models.nodes import Gpu, GpuModelField, Node
from allocations.reasons import GRANT_REASONS
from billing.policy import PastSubsidy
from portal.validators import MAX_GPU_HOURS, MAX_GPUS


def _current_member(user) -> models.Exists:
    from portal.models import Membership

    return models.Exists(Membership.objects.filter(organisation=models.OuterRef("organisation"), user=user))


def _in_team(user) -> models.Exists:
    from portal.models import Application

    return models.Exists(Application.team.through.objects.filter(application=models.OuterRef("application"), user=user))


class GrantQuerySet(models.QuerySet):
    def of_member(self, user) -> GrantQuerySet:
        """Grants the user works on: as principal investigator or in the team, and only while
        they belong to the grant's organisation."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(_current_member(user)).filter(
            models.Q(application__principal_investigator=user) | _in_team(user)
        )

    def visible_to(self, user) -> GrantQuerySet:
        """Current members who work on a grant and the organisation's owners see it; everyone
        else (a removed member included) gets 404."""
        if not user.is_authenticated:
            return self.none()
        from portal.models import Membership

        owner = Membership.objects.filter(organisation=models.OuterRef("organisation"), user=user, role="owner")
        return self.filter(_current_member(user)).filter(
            models.Q(application__principal_investigator=user) | _in_team(user) | models.Exists(owner)
        )


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
        # A grant still provisioning at its end expires: whatever was provisioned is revoked.
        Status.PROVISIONING: {Status.ACTIVE, Status.PENDING, Status.SUSPENDED, Status.EXPIRED, Status.REVOKED},
        Status.ACTIVE: {Status.SUSPENDED, Status.EXPIRED, Status.REVOKED},
        # Resuming provisions again; the grant is active once its tasks succeeded.
        Status.SUSPENDED: {Status.PROVISIONING, Status.EXPIRED, Status.REVOKED},
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
    gpu_model = GpuModelField(db_column="gpu_model")
    gpu_count = models.PositiveSmallIntegerField(
        _("GPUs"), validators=[MinValueValidator(1), MaxValueValidator(MAX_GPUS)]
    )
    gpu_hours = models.PositiveIntegerField(
        _("subsidised GPU-hours"), validators=[MinValueValidator(1), MaxValueValidator(MAX_GPU_HOURS)]
    )
    copay_percent = models.PositiveSmallIntegerField(_("co-payment percent"), validators=[MaxValueValidator(100)])
    # Copied from the call at approval, like the co-payment: the terms the applicant applied under.
    past_subsidy = models.CharField(
        _("after the subsidised hours"),
        max_length=16,
        choices=PastSubsidy.choices,
        default=PastSubsidy.SUSPEND,
        db_default=PastSubsidy.SUSPEND,
    )
    starts_on = models.DateField(_("start"))
    ends_on = models.DateField(_("end"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    status_reason = models.TextField(_("status reason"), blank=True)
    budget_override_reason = models.TextField(_("budget override reason"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = GrantQuerySet.as_manager()

    class Meta:
        verbose_name = _("grant")
        verbose_name_plural = _("grants")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_on__gt=models.F("starts_on")), name="grant_dates_ordered"),
            models.CheckConstraint(condition=models.Q(gpu_hours__gt=0), name="grant_hours_positive"),
            models.CheckConstraint(condition=models.Q(gpu_count__gt=0), name="grant_gpus_positive"),
            models.CheckConstraint(condition=models.Q(gpu_hours__lte=MAX_GPU_HOURS), name="grant_hours_max"),
            models.CheckConstraint(condition=models.Q(gpu_count__lte=MAX_GPUS), name="grant_gpus_max"),
        ]
        # The admin's grant list, newest first: read from this index until a page is full
        # instead of sorting every grant (issue 13).
        indexes = [models.Index(fields=["created_at", "id"], name="grant_created_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.gpu_count}× {self.gpu_model_id} ({self.get_status_display()})"

    def can_transition(self, new: str) -> bool:
        return new in self.ALLOWED[self.status]

    @property
    def status_reason_text(self) -> str:
        """The status reason in the reader's language where the portal wrote it (`allocations.reasons`)."""
        return GRANT_REASONS.show(self.status_reason)

    def gpu_uuids(self) -> list[str]:
        """The UUIDs of the grant's GPUs, in index order (CUDA_VISIBLE_DEVICES, device files)."""
        return [a.gpu.uuid for a in self.assignments.select_related("gpu").order_by("gpu__index")]

    def members(self) -> list:
        """Who works on the grant's GPUs: the principal investigator and the team, as far as they
        still belong to the grant's organisation (a removed member gets nothing provisioned)."""
        from portal.models import Membership

        app = self.application
        people = [app.principal_investigator, *app.team.exclude(pk=app.principal_investigator_id)]
        # Only these people's memberships: an organisation of a thousand members costs the same.
        current = set(
            Membership.objects.filter(
                organisation_id=self.organisation_id, user_id__in=[u.pk for u in people]
            ).values_list("user_id", flat=True)
        )
        return [u for u in people if u.pk in current]


class GrantEvent(models.Model):
    """One change of a grant's status: who, from, to, why (a phrase of `allocations.reasons`
    shown in the reader's language, or what staff typed) and when."""

    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="events", verbose_name=_("grant"))
    actor = models.ForeignKey(
        "portal.User", on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("actor")
    )
    old_status = models.CharField(_("old status"), max_length=16, choices=Grant.Status.choices, blank=True)
    new_status = models.CharField(_("new status"), max_length=16, choices=Grant.Status.choices)
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("grant event")
        verbose_name_plural = _("grant events")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return _("Grant #%(grant)s: %(old)s → %(new)s") % {
            "grant": self.grant_id, "old": self.get_old_status_display() or "–", "new": self.get_new_status_display(),
        }  # fmt: skip

    @property
    def reason_text(self) -> str:
        return GRANT_REASONS.show(self.reason)


class AccessInterval(models.Model):
    """A stretch of time during which the grant's members could use its GPUs: opened when the
    grant becomes active, closed when it is suspended, expires or is revoked. Written by the
    lifecycle service as the transitions happen, never reconstructed later; the billing basis
    (GPU count times minutes). A grant moved to other GPUs keeps its interval."""

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="access_intervals")
    gpu_count = models.PositiveSmallIntegerField(_("GPUs"))
    opened_at = models.DateTimeField(_("opened at"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    close_reason = models.CharField(_("closed because"), max_length=16, choices=Grant.Status.choices, blank=True)

    class Meta:
        verbose_name = _("access interval")
        verbose_name_plural = _("access intervals")
        ordering = ["grant", "opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["grant"], condition=models.Q(closed_at__isnull=True), name="access_interval_one_open_per_grant"
            ),
            models.CheckConstraint(
                condition=models.Q(closed_at__isnull=True) | models.Q(closed_at__gte=models.F("opened_at")),
                name="access_interval_ordered",
            ),
        ]
        indexes = [models.Index(fields=["opened_at"]), models.Index(fields=["closed_at"])]

    def __str__(self) -> str:
        return _("Grant #%(grant)s: %(opened)s – %(closed)s") % {
            "grant": self.grant_id,
            "opened": formats.localize(timezone.localtime(self.opened_at)),
            "closed": formats.localize(timezone.localtime(self.closed_at)) if self.closed_at else "…",
        }

    def gpu_minutes(self, start, end) -> int:
        """Whole GPU-minutes of this interval inside [start, end)."""
        lower = max(self.opened_at, start)
        upper = min(self.closed_at or end, end)
        if upper <= lower:
            return 0
        return int((upper - lower).total_seconds() // 60) * self.gpu_count


class AssignmentQuerySet(models.QuerySet):
    def overlapping(self, start, end) -> AssignmentQuerySet:
        from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

        return self.filter(period__overlap=DateTimeTZRange(start, end, "[)"))


class Assignment(models.Model):
    """One GPU lent to one grant for a time range. PostgreSQL refuses two overlapping
    assignments of the same GPU (exclusion constraint over btree_gist), whatever the code does."""

    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="assignments", verbose_name=_("grant"))
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="assignments", verbose_name=_("node"))
    gpu = models.ForeignKey(Gpu, on_delete=models.PROTECT, related_name="assignments", verbose_name=_("GPU"))
    period = DateTimeRangeField(_("period"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        verbose_name = _("assignment")
        verbose_name_plural = _("assignments")
        ordering = ["grant", "gpu__index"]
        constraints = [
            ExclusionConstraint(
                name="assignment_no_gpu_overlap",
                expressions=[("gpu", RangeOperators.EQUAL), ("period", RangeOperators.OVERLAPS)],
            ),
        ]

    def __str__(self) -> str:
        return f"grant {self.grant_id} ← {self.gpu}"
