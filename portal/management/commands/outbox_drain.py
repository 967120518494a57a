"""Send the outbox's unsent jobs and e-mails to RQ now (the cron does it every minute).
Prints in the operator's language (OperatorCommand)."""

from django.utils.translation import gettext as _

from portal.management.operator import OperatorCommand
from portal.outbox import outbox_backlog, outbox_drain


class Command(OperatorCommand):
    help = "Send unsent outbox messages (jobs and e-mails) to the RQ queues."

    def handle(self, *args, **options) -> None:
        sent = outbox_drain()
        left = outbox_backlog()
        self.stdout.write(_("Sent: %(sent)d. Still unsent: %(left)d.") % {"sent": sent, "left": left})
