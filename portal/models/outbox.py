"""The transactional outbox: background jobs and e-mails written in the same transaction as the
change that causes them, and sent to RQ only after that transaction committed.

A Redis outage therefore never turns a committed decision into an error page, and never loses
its e-mail or its provisioning job: the row stays unsent until a drain reaches Redis again.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OutboxMessage(models.Model):
    func = models.CharField(_("job"), max_length=200, help_text=_("Dotted path of the job function."))
    args = models.JSONField(_("arguments"), default=list)
    queue = models.CharField(_("queue"), max_length=50, default="default")
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent to the queue"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox")
        ordering = ["pk"]
        indexes = [models.Index(fields=["id"], condition=Q(sent_at__isnull=True), name="outbox_unsent")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.func}"
