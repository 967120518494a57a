"""Rates: KRW per GPU-hour by GPU model and price tier, effective from a date (Seoul)."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.models.nodes import GpuModelField
from portal.models import Organisation


class RateQuerySet(models.QuerySet):
    def in_effect(self, on: date | None = None) -> RateQuerySet:
        """For each GPU model and price tier, the rate with the latest effective date on or before `on`."""
        on = on or timezone.localdate()
        return (
            self.filter(effective_from__lte=on)
            .order_by("gpu_model_id", "price_tier", "-effective_from")
            .distinct("gpu_model_id", "price_tier")
        )

    def scheduled(self, after: date | None = None) -> RateQuerySet:
        return self.filter(effective_from__gt=after or timezone.localdate()).order_by("effective_from", "gpu_model_id")


class Rate(models.Model):
    gpu_model = GpuModelField(db_column="gpu_model")
    price_tier = models.CharField(_("price tier"), max_length=16, choices=Organisation.PriceTier.choices)
    krw_per_gpu_hour = models.PositiveIntegerField(_("KRW per GPU-hour"), validators=[MinValueValidator(1)])
    effective_from = models.DateField(_("effective from"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("created by"),
    )  # fmt: skip

    objects = RateQuerySet.as_manager()

    class Meta:
        verbose_name = _("rate")
        verbose_name_plural = _("rates")
        ordering = ["-effective_from", "gpu_model_id", "price_tier"]
        constraints = [
            models.UniqueConstraint(fields=["gpu_model", "price_tier", "effective_from"], name="rate_unique_per_day"),
            models.CheckConstraint(condition=models.Q(krw_per_gpu_hour__gt=0), name="rate_positive"),
        ]

    def __str__(self) -> str:
        from django.utils.formats import localize

        return _("%(model)s / %(tier)s: ₩%(krw)s from %(since)s") % {
            "model": self.gpu_model_id, "tier": self.get_price_tier_display(), "krw": f"{self.krw_per_gpu_hour:,}",
            "since": localize(self.effective_from),
        }  # fmt: skip
