"""Gapless document numbers (invoices INV-YYYY-NNNNNN, credit notes CN-YYYY-NNNNNN): a counter
row per year, locked in the caller's transaction, so a number is used only if the document it
numbers is committed with it, and two issuers never take the same one."""

from __future__ import annotations

from django.db import models


def next_number(counter_model: type[models.Model], prefix: str, year: int) -> str:
    """The next number of `prefix`'s series for `year`; call inside the issuing transaction."""
    counter_model.objects.bulk_create([counter_model(year=year)], ignore_conflicts=True)
    counter = counter_model.objects.select_for_update().get(year=year)
    counter.last += 1
    counter.save(update_fields=["last"])
    return f"{prefix}-{year}-{counter.last:06d}"
