"""seed_demo's part for billing: the demo startup used GPUs in the previous two Seoul months under
a pilot voucher that has ended, and those months are invoiced by the monthly run itself
(`invoices_run`), so the founder sees invoices and their PDFs and finance sees them in the admin.

Deterministic and idempotent: the past grant and its access intervals are created once (fixed
days and hours of the two months before the first seed); a month that already has an invoice of
the startup is not run again, so a second `make run` adds no invoice, run or e-mail.
Development only: seed_demo refuses production."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.utils import timezone

from allocations.models import AccessInterval, Grant
from allocations.services.usage import hour_start, usage_hour_build
from billing.ledger import SEOUL
from billing.models import Invoice
from billing.services.invoices import invoices_run
from billing.services.transfers import bank_transfer_record
from portal.models import Application, Call, Organisation, User

PILOT_CALL = "2026 AI Startup GPU Voucher (pilot, ended)"
FOUNDER = "founder@demo-startup.kr"
FINANCE = "finance@demo-centre.kr"
# (day, hour) opened → (day, hour) closed, in each demo month, with two GPUs.
INTERVALS = [((5, 9), (8, 9)), ((20, 10), (21, 22))]
GPUS = 2


def first_of_month(day: date, months_back: int) -> date:
    """The first day of the month `months_back` months before `day`'s month."""
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def demo_invoiced_months(today: date | None = None) -> list[date]:
    """The two Seoul months before today's, oldest first: the months the demo startup used GPUs."""
    today = today or timezone.localdate()
    return [first_of_month(today, 2), first_of_month(today, 1)]


def seed_past_grant(startup: Organisation) -> Grant:
    """The startup's ended pilot grant with its access intervals, as the grant lifecycle leaves
    them (the demo world's history: no node, no provisioning). Created once."""
    existing = Grant.objects.filter(organisation=startup, application__call__title_en=PILOT_CALL).first()
    if existing is not None:
        return existing
    first, last = demo_invoiced_months()
    end = first_of_month(last, -1)  # the first day of the current month
    founder = User.objects.get(email=FOUNDER)
    opens = datetime(first.year, first.month, 1, tzinfo=SEOUL) - timedelta(days=60)
    call = Call.objects.create(
        title_ko="2026 AI 스타트업 GPU 바우처 (시범, 종료)",
        title_en=PILOT_CALL,
        description_ko="종료된 시범 사업입니다. 데모 스타트업의 청구서가 이 사업의 이용에서 나옵니다.",
        description_en="An ended pilot. The demo startup's invoices come from its use of this voucher.",
        opens_at=opens,
        closes_at=opens + timedelta(days=30),
        eligible_kinds=["startup"],
        cap_gpu_hours=10000,
        copay_percent=20,
        past_subsidy="grace",
        allocation_starts_on=first,
        allocation_ends_on=end,
        max_startup_age_years=7,
    )
    decided = opens + timedelta(days=40)
    application = Application.objects.create(
        call=call,
        organisation=startup,
        principal_investigator=founder,
        title="Korean speech model fine-tuning (pilot)",
        abstract="Fine-tuning an open speech model on Korean call-centre audio.",
        field="nlp",
        gpu_model_id="H100-80GB",
        gpu_count=GPUS,
        gpu_hours=500,
        starts_on=first,
        ends_on=end,
        justification="2 GPUs for a few days a month.",
        data_sensitivity="internal",
        status=Application.Status.APPROVED,
        submitted_at=opens + timedelta(days=10),
        decided_at=decided,
    )
    grant = Grant.objects.create(
        organisation=startup,
        application=application,
        gpu_model_id="H100-80GB",
        gpu_count=GPUS,
        gpu_hours=500,
        copay_percent=20,
        past_subsidy="grace",
        starts_on=first,
        ends_on=end,
        status=Grant.Status.EXPIRED,
        status_reason="The pilot voucher ended.",
        created_at=decided,
    )
    for month in (first, last):
        for (d1, h1), (d2, h2) in INTERVALS:
            interval = AccessInterval.objects.create(
                grant=grant,
                gpu_count=GPUS,
                opened_at=datetime(month.year, month.month, d1, h1, tzinfo=SEOUL),
                closed_at=datetime(month.year, month.month, d2, h2, tzinfo=SEOUL),
                close_reason=Grant.Status.SUSPENDED,
            )
            # Its usage hours, as the hourly job built them at the time (it looks back only as
            # far as raw samples are kept): the dashboard's "GPU-hours used" agrees with the bill.
            hour = hour_start(interval.opened_at)
            while hour < interval.closed_at:
                usage_hour_build(hour=hour)
                hour += timedelta(hours=1)
    return grant


def seed_demo_invoices(startup: Organisation) -> list[Invoice]:
    """Invoice each month of the past grant's access that has no invoice of the startup yet, with
    the service the monthly run uses (one InvoicingRun per month, as finance sees it), issued
    today; the older month is then paid by a bank transfer that finance recorded (the admin shows
    a transfer), the newer one stays open for the founder until its due date has passed, when the
    next run records its transfer too (the demo startup never stays overdue)."""
    grant = seed_past_grant(startup)
    opened = grant.access_intervals.values_list("opened_at", flat=True)
    months = sorted({timezone.localtime(x, SEOUL).date().replace(day=1) for x in opened})
    for month in months:
        if not Invoice.objects.filter(organisation=startup, month=month).exists():
            invoices_run(month=month, out=lambda line: None)
    invoices = list(Invoice.objects.filter(organisation=startup).order_by("month"))
    today = timezone.localdate()
    finance = User.objects.get(email=FINANCE)
    for n, invoice in enumerate(invoices, start=1):
        # Every month but the newest is paid, and so is the newest once past its due date: a
        # `make run` weeks later must not find the demo startup overdue (blocked from applying,
        # with no card payment configured to settle it).
        settle = invoice is not invoices[-1] or (invoice.due_on is not None and invoice.due_on < today)
        if settle and invoice.status == Invoice.Status.OPEN and not invoice.transfers.exists():
            bank_transfer_record(
                invoice_id=invoice.pk,
                actor=finance,
                amount_krw=invoice.amount_due_krw,
                received_on=min(today, invoice.due_on),
                reference=f"DEMO-TRANSFER-{n}",
            )
    return list(Invoice.objects.filter(organisation=startup).order_by("month"))
