"""The outbox in the admin, read-only: operators see the backlog (unsent rows, attempts, the
last error) while Redis is down, and when it drained. Sent rows are pruned after a week.
Beside it, the e-mails to organisations (Mailing): whom each was sent to, decided when sent, or
why it was skipped (nobody left to tell)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from portal.admin_scale import ReadOnlyAdmin
from portal.models import Mailing, OutboxMessage
from portal.models.mailings import KINDS


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
    list_display = ["id", "func", "queue", "created_at", "sent_at", "attempts", "last_error"]
    list_filter = [SentFilter, "queue", "func"]
    ordering = ["-pk"]
    # The arguments are never shown: e-mail rows hold whole messages, password-reset links among them.
    fields = readonly_fields = ["func", "queue", "created_at", "sent_at", "attempts", "last_error"]


class MailingKindFilter(admin.SimpleListFilter):
    """The e-mail's kind by its label, not its template's name."""

    title = _("kind of e-mail")
    parameter_name = "template"

    def lookups(self, request, model_admin):
        return list(KINDS.items())

    def queryset(self, request, queryset):
        return queryset.filter(template=self.value()) if self.value() else queryset


@admin.register(Mailing)
class MailingAdmin(ReadOnlyAdmin):
    """Staff read what each e-mail was (its kind, the objects and values it showed), in their
    language; the template's name and the raw JSON stay in the database."""

    list_display = ["id", "kind", "organisation", "status", "created_at", "done_at", "reason"]
    list_filter = ["status", MailingKindFilter]
    list_select_related = ["organisation"]
    ordering = ["-pk"]
    fields = readonly_fields = [
        "kind", "audience_text", "organisation", "values", "status", "recipients_text", "reason",
        "created_at", "done_at",
    ]  # fmt: skip

    @admin.display(description=_("kind of e-mail"), ordering="template")
    def kind(self, obj: Mailing) -> str:
        return obj.kind_label

    @admin.display(description=Mailing._meta.get_field("audience").verbose_name)
    def audience_text(self, obj: Mailing) -> str:
        return obj.audience_label

    @admin.display(description=_("what it shows"))
    def values(self, obj: Mailing) -> str:
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in obj.values_text())) or "–"

    @admin.display(description=Mailing._meta.get_field("recipients").verbose_name)
    def recipients_text(self, obj: Mailing) -> str:
        return ", ".join(map(str, obj.recipients)) or "–"
