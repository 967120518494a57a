"""Send the outbox's unsent jobs and e-mails to RQ now (the cron does it every minute)."""

from portal.management.operator import OperatorCommand
from portal.outbox import outbox_backlog, outbox_drain


class Command(OperatorCommand):
    help = "Send unsent outbox messages (jobs and e-mails) to the RQ queues."

    def handle(self, *args, **options) -> None:
        sent = outbox_drain()
        self.stdout.write(f"sent {sent}, still unsent {outbox_backlog()}")
