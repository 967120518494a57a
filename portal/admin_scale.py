"""Admin pages that stay fast at national scale (issue 13).

A changelist costs one count of the filtered rows and one page of rows, never a count of the
whole table (`show_full_result_count = False`), never date-hierarchy aggregates, and never one
query per row (related objects shown in a column are joined). An inline shows the latest rows
only: an organisation with a thousand members must not render a thousand forms.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest


class ScaledAdmin(admin.ModelAdmin):
    """A ModelAdmin whose changelist does not grow with the table beyond its page."""

    show_full_result_count = False
    list_per_page = 50


class ReadOnlyInline(admin.TabularInline):
    """History or derived rows shown beside their parent: written only by services (events,
    audit rows, inventory), never edited in the admin."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class LatestRowsInline(ReadOnlyInline):
    """An inline of the parent's latest `max_rows` rows (highest pk first), read-only, with
    `related` joined so that a read-only foreign key column costs no query per row."""

    max_rows = 50
    related: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if self.related:
            queryset = queryset.select_related(*self.related)
        object_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if object_id and str(object_id).isdigit():
            fk = self.fk_name or next(f.name for f in self.model._meta.fields if f.related_model is self.parent_model)
            latest = self.model._default_manager.filter(**{f"{fk}_id": int(object_id)}).order_by("-pk").values("pk")
            queryset = queryset.filter(pk__in=latest[: self.max_rows])
        return queryset
