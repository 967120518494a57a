"""Numbers in the admin grouped by thousands in every language (12,960, not 12960): Django's
admin shows an integer field as `number_format` without grouping unless USE_THOUSAND_SEPARATOR,
which would also group ids in URLs and form inputs. An admin names `<field>_shown` instead of
the field, made here."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin
from django.db import models

from portal.stored_text import grouped


def grouped_field(model: type[models.Model], field: str) -> Callable:
    """An admin column or read-only field showing the number `field` of `model`, grouped, under
    the field's own label; sortable by the field."""

    @admin.display(description=model._meta.get_field(field).verbose_name, ordering=field)
    def show(self, obj: models.Model) -> str:
        value = getattr(obj, field)
        return "–" if value is None else grouped(value)

    show.__name__ = f"{field}_shown"
    return show
