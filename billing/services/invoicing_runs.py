"""The record of an invoicing run. Each update commits on its own (autocommit outside the
per-organisation invoice transactions), so the admin's progress page sees it while the run goes
on; a run killed midway stays `running` with the last organisation it reached."""

from __future__ import annotations

from datetime import date

from django.utils import timezone

from billing.models import InvoicingRun
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
