"""How the billing admin shows amounts and months, shared by the invoice admin (`billing/admin.py`)
and the record admins (`billing/admin_records.py`): KRW grouped by thousands in every language,
months as the portal writes them (2026-11)."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from billing.models import Invoice, InvoicingRun
from portal.admin_numbers import grouped_field
from portal.stored_text import grouped


def won(amount: int) -> str:
    """A KRW amount for the admin, grouped by thousands in every language (1,234,567)."""
    return grouped(amount)


def money_display(field: str):
    """An admin column or read-only field showing the invoice's amount `field`, grouped."""
    return grouped_field(Invoice, field)


@admin.display(description=_("month"), ordering="month")
def billing_month(obj: Invoice | InvoicingRun) -> str:
    """A month (stored as its first day) as the portal writes months (2026-11), not as a day."""
    return f"{obj.month:%Y-%m}"
