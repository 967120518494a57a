"""The rows of a ScaledAdmin changelist, written as Django's `items_for_result` writes them
(issue 13).

Django's `result_list` tag works out, for every cell of every row, what the column is (a model
field, an admin method, a path), which CSS classes and which link it gets, re-encodes the list's
filters into every row's link (`add_preserved_filters`) and formats each cell with `format_html`:
~0.2 ms a row. Here what depends only on the column is worked out once per page, the row link
once per page (a placeholder for the primary key), and each row is one string. The values go
through Django's own `lookup_field` / `display_for_field` / `display_for_value`, so what staff
see is the same HTML, byte for byte (tests/portal/test_admin_lists.py compares them).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import (
    FieldIsAForeignKeyColumnName,
    _get_non_gfk_field,
    display_for_field,
    display_for_value,
    get_fields_from_path,
    lookup_field,
)
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.urls import NoReverseMatch
from django.utils.safestring import SafeString, mark_safe

from portal.admin_scale import ScaledChangeList, escape_text

Lookup = Callable[[Any], tuple[Any, Any, Any]]


def _coerce_field_name(field_name, field_index: int) -> str:
    """Django's column class name (admin_list._coerce_field_name)."""
    if callable(field_name):
        return f"lambda{field_index}" if field_name.__name__ == "<lambda>" else field_name.__name__
    return field_name


def _lookup(cl, field_name) -> Lookup:
    """`lookup_field(field_name, row, model_admin)` for this column, with the branch it takes
    chosen once per page where it depends only on the column (a model field, a callable, an
    admin method); anything else (a model method, property or path) asks Django per row."""
    try:
        field = _get_non_gfk_field(cl.model._meta, field_name)
    except (FieldDoesNotExist, FieldIsAForeignKeyColumnName, TypeError):
        if callable(field_name):
            return lambda obj: (None, field_name, field_name(obj))
        if hasattr(cl.model_admin, field_name) and field_name != "__str__":
            attr = getattr(cl.model_admin, field_name)
            return lambda obj: (None, attr, attr(obj))
        model_admin = cl.model_admin
        return lambda obj: lookup_field(field_name, obj, model_admin)
    return lambda obj: (field, None, getattr(obj, field_name))


class RowRenderer:
    """Writes the `<td>`/`<th>` cells of a changelist row as `items_for_result` does for a list
    without `list_editable` forms and outside a popup (the only lists this is used for)."""

    def __init__(self, cl) -> None:
        self.cl = cl
        self.empty = cl.model_admin.get_empty_value_display()
        self.columns = []
        first = True
        for index, field_name in enumerate(cl.list_display):
            link = self._link_in_col(first, field_name)
            tag = None
            if link:
                tag = "th" if first else "td"
                first = False
            self.columns.append(
                (field_name, f"field-{_coerce_field_name(field_name, index)}", _lookup(cl, field_name), tag)
            )
        self._href: tuple[str, str] | None = None

    def _link_in_col(self, is_first: bool, field_name) -> bool:
        links = self.cl.list_display_links
        if links is None:
            return False
        if is_first and not links:
            return True
        return field_name in links

    def href(self, result) -> str:
        """The row's link as `add_preserved_filters` writes it; for an integer key the filters
        are parsed and re-encoded once per page, not once per row."""
        cl = self.cl
        pk = getattr(result, cl.pk_attname)
        context = {"preserved_filters": cl.preserved_filters, "opts": cl.opts}
        if not isinstance(pk, int) or type(cl).url_for_result is not ScaledChangeList.url_for_result:
            return add_preserved_filters(context, cl.url_for_result(result))
        if self._href is None:
            head, _, tail = add_preserved_filters(context, cl.url_for_pk_slot()).partition(cl.pk_slot)
            self._href = (head, tail)
        return f"{self._href[0]}{pk}{self._href[1]}"

    def cell(self, result, field_name, column_class: str, lookup: Lookup, tag: str | None) -> str:
        """One cell: the body of Django's `items_for_result` loop for this column."""
        empty_value_display = self.empty
        row_classes = [column_class]
        try:
            f, attr, value = lookup(result)
        except ObjectDoesNotExist:
            result_repr = empty_value_display
        else:
            empty_value_display = getattr(attr, "empty_value_display", empty_value_display)
            if f is None and isinstance(field_name, str) and LOOKUP_SEP in field_name:
                try:
                    f = get_fields_from_path(self.cl.model, field_name)[-1]
                except FieldDoesNotExist:
                    pass
            if f is None or f.auto_created:
                if field_name == "action_checkbox":
                    row_classes = ["action-checkbox"]
                boolean = getattr(attr, "boolean", False)
                if isinstance(attr, property) and hasattr(attr, "fget"):
                    boolean = getattr(attr.fget, "boolean", False)
                result_repr = display_for_value(value, empty_value_display, boolean)
                if isinstance(value, (datetime.date, datetime.time)):
                    row_classes.append("nowrap")
            else:
                if isinstance(f.remote_field, models.ManyToOneRel):
                    result_repr = empty_value_display if value is None else value
                else:
                    result_repr = display_for_field(value, f, empty_value_display, avoid_link=tag is not None)
                if isinstance(f, (models.DateField, models.TimeField, models.ForeignKey)):
                    row_classes.append("nowrap")
        row_class = ' class="{}"'.format(" ".join(row_classes))
        if tag is None:
            return f"<td{row_class}>{escape_text(result_repr)}</td>"
        try:
            url = self.href(result)
        except NoReverseMatch:
            link_or_text = escape_text(result_repr)
        else:
            link_or_text = f'<a href="{escape_text(url)}">{escape_text(result_repr)}</a>'
        return f"<{tag}{row_class}>{link_or_text}</{tag}>"

    def row(self, result) -> SafeString:
        """A row's cells, concatenated (what the template wrote item after item)."""
        return mark_safe("".join([self.cell(result, *column) for column in self.columns]))  # noqa: S308 - cells escaped above


def fast_rows_apply(cl) -> bool:
    """Whether this list's rows may be written here: no editable forms, no popup (whose links
    carry a `data-popup-opener`); anything else is Django's own `result_list`."""
    return not cl.formset and not cl.is_popup
