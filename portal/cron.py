"""Periodic jobs, run by `manage.py rqcron portal.cron` beside the worker."""

from django.core.management import call_command
from rq import cron

from allocations import jobs as allocation_jobs
from billing import jobs as billing_jobs
from portal import jobs as portal_jobs


def clear_expired_sessions_job() -> None:
    call_command("clearsessions")


cron.register(clear_expired_sessions_job, queue_name="default", cron="15 4 * * *")
# Jobs and e-mails written while Redis was down (portal/outbox.py).
cron.register(portal_jobs.outbox_drain_job, queue_name="default", interval=60)
cron.register(portal_jobs.outbox_prune_job, queue_name="default", cron="25 4 * * *")
cron.register(portal_jobs.mailings_prune_job, queue_name="default", cron="35 4 * * *")
# One reconcile job per node, spread over the workers (docs/deployment.md, sizing), on its own
# queue, which the workers serve after `default`.
cron.register(allocation_jobs.reconcile_nodes_fanout_job, queue_name=allocation_jobs.RECONCILE_QUEUE, interval=300)
cron.register(allocation_jobs.grants_place_pending_job, queue_name="default", interval=300)
cron.register(allocation_jobs.grants_expire_job, queue_name="default", cron="5 * * * *")
# Billing: invoices on the 1st at 03:00 Seoul (18:00 UTC on the day before the 1st: cron runs in UTC,
# so the job itself picks the month that ended in Seoul and skips other days), charge retries,
# overdue suspensions and subsidy thresholds.
cron.register(billing_jobs.invoices_run_job, queue_name="default", cron="0 18 28-31 * *")
cron.register(billing_jobs.invoices_charge_due_job, queue_name="default", cron="30 * * * *")
cron.register(billing_jobs.invoices_enforce_overdue_job, queue_name="default", cron="10 4 * * *")
cron.register(billing_jobs.grants_subsidy_check_job, queue_name="default", cron="*/15 * * * *")

# Metering: partitions of the samples table ahead and retention; usage hours every 10 minutes.
cron.register(allocation_jobs.metering_partitions_job, queue_name="default", interval=3600)
cron.register(allocation_jobs.usage_hours_job, queue_name="default", interval=600)
cron.register(allocation_jobs.metering_findings_job, queue_name="default", interval=600)
cron.register(allocation_jobs.idle_report_job, queue_name="default", cron="0 9 * * 1")
