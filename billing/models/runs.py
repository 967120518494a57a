"""An invoicing run (the monthly job, `manage.py run_invoicing`): one row per run, updated after
each organisation so the admin shows how far it has gone while it runs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _


class InvoicingRun(models.Model):
    """Only billing.services.invoicing_runs sets `state`, following ALLOWED."""

    class State(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    ALLOWED = {State.RUNNING: {State.SUCCEEDED, State.FAILED}, State.SUCCEEDED: set(), State.FAILED: set()}

    month = models.DateField(_("month"), help_text=_("The first day of the invoiced month."))
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.RUNNING)
    total = models.PositiveIntegerField(_("organisations"), default=0)
    done = models.PositiveIntegerField(_("done"), default=0)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    current = models.CharField(_("current organisation"), max_length=200, blank=True)
    steps = models.JSONField(_("steps"), default=list, blank=True)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("invoicing run")
        verbose_name_plural = _("invoicing runs")
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        # Seoul time with its zone, as the admin writes every time: "2026-09 (2026-11-30 09:25 KST)".
        return f"{self.month:%Y-%m} ({date_format(timezone.localtime(self.started_at), 'DATETIME_FORMAT')})"
