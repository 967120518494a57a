"""The record of an invoicing run. Each update commits on its own (autocommit outside the
per-organisation invoice transactions), so the admin's progress page sees it while the run goes
on; a run killed midway stays `running` with the last organisation it reached."""

from __future__ import annotations

from datetime import date, timedelta

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing.models import InvoicingRun
from portal.errors import PortalError
from portal.models import OutboxMessage
from portal.outbox import outbox_enqueue
from portal.progress import steps_append

R = InvoicingRun.State


def invoicing_run_start(*, month: date, total: int) -> InvoicingRun:
    return InvoicingRun.objects.create(month=month, total=total, state=R.RUNNING)


def invoicing_run_step(*, run: InvoicingRun, done: int, current: str, counts: dict, line: str) -> None:
    """After one organisation: how many are done, which one, the counts so far, the line printed."""
    run.done, run.current, run.counts = done, current, dict(counts)
    run.steps = steps_append(run.steps, line)
    run.save(update_fields=["done", "current", "counts", "steps"])


def invoicing_run_finish(*, run: InvoicingRun, line: str, error: str = "") -> None:
    new = R.FAILED if error else R.SUCCEEDED
    if new not in InvoicingRun.ALLOWED[run.state]:
        raise ValueError(f"invoicing run {run.pk}: {run.state} → {new} is not allowed")
    run.state = new
    run.error = error[:4000]
    run.current = ""
    run.finished_at = timezone.now()
    run.steps = steps_append(run.steps, line)
    run.save(update_fields=["state", "error", "current", "finished_at", "steps"])


# Enqueued by dotted path: billing.jobs imports the services, never the reverse.
RUN_JOB = "billing.jobs.invoices_run_month_job"


def invoicing_month_ended(month: date, today: date | None = None) -> bool:
    return month.replace(day=1) < (today or timezone.localdate()).replace(day=1)


# Advisory lock keys (namespace, yyyymm): one queue decision per month at a time.
LOCK_NAMESPACE = 0x6269  # "bi"
# A queued month whose run has not started within this long is taken as lost: it may be queued again.
QUEUED_FRESH = timedelta(minutes=15)


@transaction.atomic
def invoicing_run_queue(*, month: date) -> bool:
    """Finance starts a month's invoicing from the admin: a job on a worker (through the outbox,
    so it is queued only if this commits); its InvoicingRun appears when the worker starts it.
    Only a month that has ended is invoiced (the job checks again). A second request for a month
    already queued whose run has not started yet (a double submit, two people at once) queues
    nothing and returns False."""
    if not invoicing_month_ended(month):
        raise PortalError(_("Only a month that has ended can be invoiced."), code="month_not_over")
    first = month.replace(day=1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, first.year * 100 + first.month])
    queued = (
        OutboxMessage.objects.filter(
            func=RUN_JOB, args=[first.isoformat()], created_at__gte=timezone.now() - QUEUED_FRESH
        )
        .order_by("-created_at")
        .first()
    )
    if queued is not None and not InvoicingRun.objects.filter(month=first, started_at__gte=queued.created_at).exists():
        return False
    outbox_enqueue(RUN_JOB, first.isoformat())
    return True
