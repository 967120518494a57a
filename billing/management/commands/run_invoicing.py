"""Issue the monthly invoices now (the periodic job does the same on the 1st at 03:00 Seoul).
The command's own messages are in the operator's language (OperatorCommand); the progress lines
come from `invoices_run`, which also records them on the invoicing run the admin shows, in English
whoever starts the run (the monthly job has no operator)."""

from datetime import date

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from billing.services.invoices import invoices_run
from portal.management.operator import OperatorCommand


def parse_month(value: str) -> date:
    try:
        year, month = (int(p) for p in value.split("-"))
        return date(year, month, 1)
    except ValueError as exc:
        raise CommandError(_("--month must be YYYY-MM, not %(value)r") % {"value": value}) from exc


class Command(OperatorCommand):
    help = "Issue one invoice per organisation with charges for a calendar month (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--month", required=True, help="YYYY-MM (Seoul calendar month)")

    def handle(self, *args, month: str, **opts) -> None:
        wanted = parse_month(month)
        if wanted >= timezone.localdate().replace(day=1):
            raise CommandError(_("only a month that has ended can be invoiced"))
        counts = invoices_run(month=wanted, out=self.stdout.write)
        if counts["failed"]:
            failed = counts["failed"]
            raise CommandError(
                ngettext(
                    "%(count)d organisation could not be invoiced (see above)",
                    "%(count)d organisations could not be invoiced (see above)",
                    failed,
                )
                % {"count": failed}
            )
