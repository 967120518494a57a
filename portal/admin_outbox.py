"""The outbox in the admin, read-only: operators see the backlog (unsent rows, attempts, the
last error) while Redis is down, and when it drained. Sent rows are pruned after a week.
Beside it, the e-mails to organisations (Mailing): whom each was sent to, decided when sent, or
why it was skipped (nobody left to tell)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from portal.admin_scale import ReadOnlyAdmin
from portal.models import Mailing, OutboxMessage


class SentFilter(admin.SimpleListFilter):
    title = _("sent")
    parameter_name = "sent"

    def lookups(self, request, model_admin):
        return [("no", _("Not sent yet")), ("yes", _("Sent"))]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(sent_at=None)
        if self.value() == "yes":
            return queryset.exclude(sent_at=None)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["pk", "func", "queue", "created_at", "sent_at", "attempts", "last_error"]
    list_filter = [SentFilter, "queue", "func"]
    ordering = ["-pk"]
    # The arguments are never shown: e-mail rows hold whole messages, password-reset links among them.
    fields = readonly_fields = ["func", "queue", "created_at", "sent_at", "attempts", "last_error"]


@admin.register(Mailing)
class MailingAdmin(ReadOnlyAdmin):
    list_display = ["pk", "template", "organisation", "status", "created_at", "done_at", "reason"]
    list_filter = ["status", "template"]
    list_select_related = ["organisation"]
    ordering = ["-pk"]
    fields = readonly_fields = [
        "template", "audience", "organisation", "refs", "context", "status", "recipients", "reason", "created_at",
        "done_at",
    ]  # fmt: skip
