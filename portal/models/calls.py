"""Calls: funding rounds for subsidised GPU time."""

from __future__ import annotations

from datetime import datetime

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from allocations.models.nodes import GpuModelField
from billing.policy import PastSubsidy
from portal.models.organisations import Organisation
from portal.stored_text import grouped
from portal.validators import MAX_CALL_BUDGET_GPU_HOURS, MAX_GPU_HOURS, MAX_STARTUP_AGE_YEARS


class CallQuerySet(models.QuerySet):
    def open(self, now: datetime | None = None) -> CallQuerySet:
        now = now or timezone.now()
        return self.filter(opens_at__lte=now, closes_at__gt=now)

    def upcoming(self, now: datetime | None = None) -> CallQuerySet:
        return self.filter(opens_at__gt=now or timezone.now())


class Call(models.Model):
    """A funding round for subsidised GPU time."""

    title_ko = models.CharField(_("title (Korean)"), max_length=200)
    title_en = models.CharField(_("title (English)"), max_length=200)
    description_ko = models.TextField(_("description (Korean)"), blank=True)
    description_en = models.TextField(_("description (English)"), blank=True)
    opens_at = models.DateTimeField(_("opens at"))
    closes_at = models.DateTimeField(_("closes at"))
    eligible_kinds = ArrayField(
        models.CharField(max_length=32, choices=Organisation.Kind.choices),
        verbose_name=_("eligible organisation kinds"),
    )
    cap_gpu_hours = models.PositiveIntegerField(
        _("cap per application (GPU-hours)"), validators=[MinValueValidator(1), MaxValueValidator(MAX_GPU_HOURS)]
    )
    copay_percent = models.PositiveSmallIntegerField(
        _("co-payment percent"), default=0, validators=[MaxValueValidator(100)]
    )
    past_subsidy = models.CharField(
        _("after the subsidised hours"),
        max_length=16,
        choices=PastSubsidy.choices,
        default=PastSubsidy.SUSPEND,
        db_default=PastSubsidy.SUSPEND,
        help_text=_("What happens to a grant of this call once its subsidised GPU-hours are used up."),
    )
    allocation_starts_on = models.DateField(_("allocation window starts"))
    allocation_ends_on = models.DateField(_("allocation window ends"))
    max_startup_age_years = models.PositiveSmallIntegerField(
        _("maximum startup age (years)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_STARTUP_AGE_YEARS)],
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = CallQuerySet.as_manager()

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        ordering = ["-opens_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(closes_at__gt=models.F("opens_at")), name="call_closes_after_opening"
            ),
            models.CheckConstraint(
                condition=models.Q(allocation_ends_on__gt=models.F("allocation_starts_on")),
                name="call_window_ordered",
            ),
            models.CheckConstraint(condition=models.Q(copay_percent__lte=100), name="call_copay_percent_max_100"),
            models.CheckConstraint(
                condition=models.Q(cap_gpu_hours__gte=1, cap_gpu_hours__lte=MAX_GPU_HOURS), name="call_cap_in_bounds"
            ),
            models.CheckConstraint(
                condition=models.Q(max_startup_age_years__isnull=True)
                | models.Q(max_startup_age_years__gte=1, max_startup_age_years__lte=MAX_STARTUP_AGE_YEARS),
                name="call_startup_age_in_bounds",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def title(self) -> str:
        return self.title_ko if (get_language() or "ko").startswith("ko") else self.title_en

    @property
    def description(self) -> str:
        return self.description_ko if (get_language() or "ko").startswith("ko") else self.description_en

    def eligible_kind_labels(self) -> list[str]:
        return [str(Organisation.Kind(k).label) for k in self.eligible_kinds]


class CallBudget(models.Model):
    """GPU-hours a call can award for one GPU model."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="budgets", verbose_name=_("call"))
    gpu_model = GpuModelField(db_column="gpu_model")
    gpu_hours = models.PositiveIntegerField(
        _("GPU-hour budget"), validators=[MaxValueValidator(MAX_CALL_BUDGET_GPU_HOURS)]
    )

    class Meta:
        verbose_name = _("call budget")
        verbose_name_plural = _("call budgets")
        ordering = ["gpu_model_id"]
        constraints = [
            models.UniqueConstraint(fields=["call", "gpu_model"], name="callbudget_unique_model"),
            models.CheckConstraint(
                condition=models.Q(gpu_hours__lte=MAX_CALL_BUDGET_GPU_HOURS), name="callbudget_hours_max"
            ),
        ]

    def __str__(self) -> str:
        return _("%(model)s: %(hours)s GPU-hours") % {"model": self.gpu_model_id, "hours": grouped(self.gpu_hours)}
