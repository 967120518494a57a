"""Periodic jobs, run by `manage.py rqcron portal.cron` beside the worker."""

from django.core.management import call_command
from rq import cron


def clear_expired_sessions_job() -> None:
    call_command("clearsessions")


cron.register(clear_expired_sessions_job, queue_name="default", cron="15 4 * * *")
