"""Admin pages that stay fast at national scale (issue 13).

A changelist costs one count of the filtered rows and one page of rows, never a count of the
whole table (`show_full_result_count = False`), never date-hierarchy aggregates, and never one
query per row (related objects shown in a column are joined, for the page's rows). An inline
shows the latest rows only; rows nobody edits on a change page are a read-only table
(`readonly_table`), not an inline of forms: an organisation with a thousand members must not
render a thousand forms, nor fifty.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_str
from django.utils.functional import Promise
from django.utils.hashable import make_hashable
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext

# Django's own message, translated by the admin's catalogue (a variable: not copied into ours).
ACTION_CHECKBOX_LABEL = "Select this object for an action - {}"
# Stands for a row's primary key in the change URL reversed once per page (not a possible pk).
PK_SLOT = "__pk_slot__"


def escape_text(value) -> str:
    """`conditional_escape(value)` without its lazy-argument wrapper around `escape` (called for
    every cell of a list): safe strings as they are, anything else escaped as Django escapes."""
    if isinstance(value, Promise):
        value = str(value)
    if hasattr(value, "__html__"):
        return value.__html__()
    return html.escape(str(value))


def format_rows(format_string: str, rows: Iterable[Iterable[Any]]) -> SafeString:
    """`format_html_join("", format_string, rows)`, the same HTML, with each value escaped by
    `escape_text` (the admin's change page writes hundreds of such values)."""
    return mark_safe(  # noqa: S308 - every value is escaped here; the format string is ours
        "".join([format_string.format(*[escape_text(v) for v in row]) for row in rows])
    )


def readonly_table(headers: Iterable[Any], rows: Iterable[Iterable[Any]]) -> SafeString:
    """A read-only table of rows shown on a change page: what an inline of read-only rows showed,
    without a form per row (such inlines were a third of the application change page's CPU and
    most of the largest organisation's, issue 13). Every header and cell is escaped."""
    head = format_rows("<th>{}</th>", ((capfirst(h),) for h in headers))
    body = format_rows("<tr>{}</tr>", ((format_rows("<td>{}</td>", ((cell,) for cell in row)),) for row in rows))
    return format_html('<table class="readonly-rows"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)


def local_time(moment) -> str:
    """A time as the change pages' tables write it: in the portal's time zone, with the zone
    ("2026-11-29 17:38 KST"); `formats.localize` costs ten times more per cell."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def local_period(period) -> str:
    """A time range in the portal's zone, as the change pages write times, its ends joined by an
    en dash ("2026-11-30 09:28 KST", "2027-03-01 00:00 KST"; an open end stays open), never the
    raw `[…+00:00, …)` range."""
    if period is None:
        return "-"
    lower = local_time(period.lower) if period.lower else ""
    upper = local_time(period.upper) if period.upper else ""
    return f"{lower} – {upper}".strip()


def choice_display(model, field_name: str) -> Callable[[Any], Any]:
    """What `obj.get_<field_name>_display()` returns for a value, with the field's choices read
    once (Django builds the choices dictionary again on every call)."""
    choices = dict(make_hashable(model._meta.get_field(field_name).flatchoices))
    return lambda value: force_str(choices.get(make_hashable(value), value), strings_only=True)


class ScaledChangeList(ChangeList):
    """Row links carry the list's filters (back to the same filtered list after a change) without
    resolving each link against every URL pattern: Django's `add_preserved_filters` did that
    once per row, a third of a filtered 50-row page's CPU (issue 13)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # items_for_result adds `preserved_filters` to each row's link when it is set; the same
        # query string is added here once per row instead.
        self.row_filters, self.preserved_filters = self.preserved_filters, ""
        self._change_url: str | None = None

    pk_slot = PK_SLOT

    def _slot_url(self) -> str:
        """The change URL with `PK_SLOT` for the primary key, reversed once per page."""
        if self._change_url is None:
            self._change_url = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=(PK_SLOT,),
                current_app=self.model_admin.admin_site.name,
            )
        return self._change_url

    def url_for_pk_slot(self) -> str:
        """What `url_for_result` returns for a row whose (integer) key is `PK_SLOT`."""
        return f"{self._slot_url()}?{self.row_filters}" if self.row_filters else self._slot_url()

    def url_for_result(self, result) -> str:
        """The row's change URL, as Django's `reverse` writes it: reversed once per page with a
        placeholder for the (integer) primary key, not once per row against the URL patterns."""
        pk = getattr(result, self.pk_attname)
        if isinstance(pk, int):
            url = self._slot_url().replace(PK_SLOT, str(pk))
        else:  # a text key is quoted twice by Django (admin quote, then URL quote): leave it to it
            url = super().url_for_result(result)
        return f"{url}?{self.row_filters}" if self.row_filters else url


class JoinAfterLimitChangeList(ScaledChangeList):
    """A list that sorts, counts and limits its model's rows alone, then joins the related objects
    its columns show (`related`) for the page's rows only, in the same query: joined before the
    LIMIT, PostgreSQL joined every matching row (all 3,001 grants) to its relations before
    sorting to keep 50 (issue 13). The page's query is the list's own (filters, search,
    ordering, annotations and the model admin's `get_queryset` rules unchanged) restricted to
    the primary keys of the page, read by a subquery with the list's ORDER BY and LIMIT."""

    related: tuple[str, ...] = ()  # relations joined for the page's rows

    def get_queryset(self, request: HttpRequest, exclude_parameters=None) -> QuerySet:
        return super().get_queryset(request, exclude_parameters).select_related(None)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        page = self.result_list
        if page.query.is_sliced:  # one page of many: the page's keys, then the joins
            page = self.queryset.filter(pk__in=page.values("pk"))
        self.result_list = page.select_related(*self.related)


class ScaledAdmin(admin.ModelAdmin):
    """A ModelAdmin whose changelist does not grow with the table beyond its page."""

    show_full_result_count = False
    list_per_page = 50

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[ChangeList]:
        return ScaledChangeList

    def action_checkbox(self, obj) -> str:
        """Django's row checkbox, the same HTML, without rendering a widget template per row
        (a fifth of a 50-row page's CPU)."""
        label = gettext(ACTION_CHECKBOX_LABEL).format(escape_text(str(obj)))  # as format_html writes it
        return mark_safe(  # noqa: S308 - the name, key and label are escaped here
            f'<input type="checkbox" name="{escape_text(helpers.ACTION_CHECKBOX_NAME)}"'
            f' value="{escape_text(str(obj.pk))}" class="action-select" aria-label="{label}">'
        )


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


class ReadOnlyAdmin(ScaledAdmin):
    """A list staff read and never write (rows written by services and jobs only): no add,
    change or delete for anyone; the view permission decides who sees it."""

    def has_add_permission(self, request) -> bool:
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
