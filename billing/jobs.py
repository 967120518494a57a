"""Background jobs of the billing app: each takes ids or nothing, reloads rows, re-checks state
and calls one service, so a retry does no harm."""

from __future__ import annotations

from datetime import date, timedelta

from django.utils import timezone

from billing.services import consequences, payments
from billing.services.invoices import invoices_run
from billing.services.invoicing_runs import invoicing_month_ended


def invoices_run_job() -> dict | None:
    """On the 1st (Seoul): invoice the month that just ended. Scheduled in UTC on the 28th-31st at
    18:00, which is 03:00 Seoul on the next day; only the run that lands on a 1st does anything."""
    today = timezone.localdate()
    if today.day != 1:
        return None
    last_month = today - timedelta(days=1)
    return invoices_run(month=last_month.replace(day=1))


def invoices_run_month_job(month: str) -> dict | None:
    """A month's invoicing started from the admin (`invoicing_run_queue`); rerunning is harmless
    (invoices already issued are kept, the run resumes where another stopped)."""
    first = date.fromisoformat(month).replace(day=1)
    if not invoicing_month_ended(first):
        return None
    return invoices_run(month=first)


def invoice_charge_job(invoice_id: int) -> str:
    return payments.invoice_charge(invoice_id=invoice_id)


def invoices_charge_due_job() -> list[int]:
    return payments.invoices_charge_due()


def stripe_event_job(event_pk: int) -> str:
    return payments.stripe_event_process(event_pk=event_pk)


def invoices_enforce_overdue_job() -> list[int]:
    return consequences.invoices_enforce_overdue()


def grants_subsidy_check_job() -> dict[int, str]:
    return consequences.grants_subsidy_check()
