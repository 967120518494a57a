"""Issue the monthly invoices now (the periodic job does the same on the 1st at 03:00 Seoul)."""

from datetime import date

from django.core.management.base import CommandError
from django.utils import timezone

from billing.services.invoices import invoices_run
from portal.management.operator import OperatorCommand


def parse_month(value: str) -> date:
    try:
        year, month = (int(p) for p in value.split("-"))
        return date(year, month, 1)
    except ValueError as exc:
        raise CommandError(f"--month must be YYYY-MM, not {value!r}") from exc


class Command(OperatorCommand):
    help = "Issue one invoice per organisation with charges for a calendar month (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--month", required=True, help="YYYY-MM (Seoul calendar month)")

    def handle(self, *args, month: str, **opts) -> None:
        wanted = parse_month(month)
        if wanted >= timezone.localdate().replace(day=1):
            raise CommandError("only a month that has ended can be invoiced")
        counts = invoices_run(month=wanted, out=self.stdout.write)
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} organisations could not be invoiced (see above)")
