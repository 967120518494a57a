"""The monthly run: one invoice per organisation with charges, gapless numbers, idempotent,
safe to run twice at once and to resume after a killed worker."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection

from billing.models import Invoice, InvoiceCounter, InvoiceLine
from billing.services.invoices import invoice_issue, invoices_run, organisation_has_overdue_invoice
from tests.billing.helpers import at, grant_for, rate_card, startup

NOV = date(2026, 11, 1)
ISSUED = date(2026, 12, 1)


@pytest.fixture
def rates(db):
    rate_card("startup", 3000)
    rate_card("startup", 3600, since=date(2026, 11, 16))


def test_an_organisation_with_charges_gets_one_invoice_with_lines_per_grant_and_rate_period(rates, jobs):
    org, _owner = startup()
    # 100 h subsidy, 2 GPUs 15 Nov 20:00 - 16 Nov 04:00 = 16 GPU-h: 8 h at 3,000 and 8 h at 3,600, 20 %.
    grant_for(org, gpus=2, intervals=[(at(15, 20), at(16, 4))])
    with jobs.committed():
        counts = invoices_run(month=NOV, today=ISSUED)
    assert counts["issued"] == 1
    invoice = Invoice.objects.get(organisation=org)
    lines = [(x.kind, x.gpu_minutes, x.krw_per_gpu_hour, x.amount_krw) for x in invoice.lines.all()]
    # 480 min x 3,000 x 20 % = 4,800; 480 min x 3,600 x 20 % = 5,760.
    assert lines == [("subsidised", 480, 3000, 4800), ("subsidised", 480, 3600, 5760)]
    assert (invoice.supply_krw, invoice.vat_krw, invoice.total_krw) == (10560, 1056, 11616)
    assert invoice.number == "INV-2026-000001"
    assert (invoice.buyer_brn, invoice.due_on) == (org.business_registration_number, date(2026, 12, 15))
    jobs.run()
    assert [m.to for m in mail.outbox] == [[org.memberships.get(role="billing").user.email]]
    assert "INV-2026-000001" in mail.outbox[0].subject


def test_rerunning_a_month_changes_nothing(rates):
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    first = invoices_run(month=NOV, today=ISSUED)
    again = invoices_run(month=NOV, today=ISSUED)
    assert (first["issued"], again["issued"], again["existing"]) == (1, 0, 1)
    assert Invoice.objects.count() == 1 and InvoiceCounter.objects.get(year=2026).last == 1


def test_an_organisation_without_charges_gets_no_invoice(rates):
    org, _ = startup()
    grant_for(org, copay=0, intervals=[(at(2, 9), at(2, 19))])
    assert invoices_run(month=NOV, today=ISSUED)["nothing"] == 1
    assert not Invoice.objects.exists()


def test_numbers_are_gapless_and_restart_each_year(rates):
    orgs = [startup()[0] for _ in range(3)]
    for org in orgs:
        grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice_issue(organisation_id=orgs[0].pk, month=NOV, today=date(2026, 12, 1))
    invoice_issue(organisation_id=orgs[1].pk, month=NOV, today=date(2026, 12, 1))
    invoice_issue(organisation_id=orgs[2].pk, month=date(2026, 12, 1), today=date(2027, 1, 1))
    grant_for(orgs[2], intervals=[(at(3, 9), at(3, 10))])
    invoice_issue(organisation_id=orgs[2].pk, month=NOV, today=date(2027, 1, 1))
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [
        "INV-2026-000001",
        "INV-2026-000002",
        "INV-2027-000001",
    ]


def test_a_run_that_failed_midway_resumes_without_duplicates_or_gaps(rates, monkeypatch):
    orgs = [startup()[0] for _ in range(3)]
    for org in orgs:
        grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    import billing.services.invoices as service

    real = service.InvoiceLine.objects.bulk_create
    calls = {"n": 0}

    def dies_on_the_second(objs, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("worker killed")  # like a SIGKILL inside the second organisation's transaction
        return real(objs, *a, **kw)

    monkeypatch.setattr(service.InvoiceLine.objects, "bulk_create", dies_on_the_second)
    with pytest.raises(SystemExit):
        invoices_run(month=NOV, today=ISSUED)
    assert Invoice.objects.count() == 1 and InvoiceCounter.objects.get(year=2026).last == 1
    monkeypatch.setattr(service.InvoiceLine.objects, "bulk_create", real)
    counts = invoices_run(month=NOV, today=ISSUED)
    assert (counts["existing"], counts["issued"]) == (1, 2)
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [f"INV-2026-00000{i}" for i in (1, 2, 3)]
    assert InvoiceLine.objects.count() == 3


def test_usage_without_a_rate_is_reported_and_the_others_are_invoiced(rates, capsys):
    ok, _ = startup()
    bad, _ = startup()
    grant_for(ok, intervals=[(at(2, 9), at(2, 19))])
    grant_for(bad, model="A100-80GB", intervals=[(at(2, 9), at(2, 19))])
    lines: list[str] = []
    counts = invoices_run(month=NOV, today=ISSUED, out=lines.append)
    assert (counts["issued"], counts["failed"]) == (1, 1)
    assert any("FAILED" in x and "A100-80GB" in x for x in lines)


def test_the_command_prints_progress_and_refuses_a_month_not_over(rates, capsys):
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9, month=10), at(2, 19, month=10))])
    call_command("run_invoicing", "--month", "2026-10")
    out = capsys.readouterr().out
    assert "[1/1]" in out and "INV-" in out and "issued 1" in out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("run_invoicing", "--month", "2026-11")
    with pytest.raises(CommandError):
        call_command("run_invoicing", "--month", "November")


def test_an_invoice_past_its_due_date_fails_the_eligibility_rule(rates):
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _created = invoice_issue(organisation_id=org.pk, month=NOV, today=ISSUED)
    assert organisation_has_overdue_invoice(org.pk) is (invoice.due_on < date.today())
    Invoice.objects.filter(pk=invoice.pk).update(due_on=date(2026, 1, 1))
    assert organisation_has_overdue_invoice(org.pk) is True


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_produce_one_invoice_per_organisation():
    rate_card("startup", 3000)
    orgs = [startup()[0] for _ in range(4)]
    for org in orgs:
        grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run():
        try:
            barrier.wait()
            invoices_run(month=NOV, today=ISSUED)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Invoice.objects.count() == 4
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [f"INV-2026-00000{i}" for i in range(1, 5)]


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_inside_an_invoice_leaves_no_gap_and_the_rerun_finishes():
    """A real SIGKILL: the run is stopped inside the second organisation's transaction, holding the
    year's counter (number 2 taken, not committed); the rerun gives 2 and 3, without duplicates."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from django.conf import settings as django_settings
    from django.db import transaction

    from portal.models import Membership, Organisation, OutboxMessage

    rate_card("startup", 3000)
    orgs = [startup()[0] for _ in range(3)]
    for org in orgs:
        grant_for(org, intervals=[(at(2, 9, month=10), at(2, 19, month=10))])
    Membership.objects.filter(organisation=orgs[0]).delete()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'].replace('/', '%2F')}:{db['PORT']}/{db['NAME']}",
    }
    code = (
        "import django, os, datetime;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'portal.settings'); django.setup();"
        "from billing.services.invoices import invoices_run;"
        "invoices_run(month=datetime.date(2026, 10, 1), today=datetime.date(2026, 11, 1), out=print)"
    )
    with transaction.atomic():
        # The outbox table locked against inserts stops the worker at the second organisation's
        # e-mail: after it took the counter and wrote the invoice and lines, before its COMMIT (the
        # first organisation has nobody to e-mail, so it goes through).
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {OutboxMessage._meta.db_table} IN SHARE MODE")
        worker = subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=django_settings.BASE_DIR, start_new_session=True
        )
        deadline = time.monotonic() + 30
        blocked = False
        while time.monotonic() < deadline and not blocked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # statistics are frozen per transaction
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                blocked = cursor.fetchone()[0] > 0
            time.sleep(0.05)
        assert blocked, "the worker never reached the second organisation"
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert list(Invoice.objects.values_list("organisation_id", "number")) == [(orgs[0].pk, "INV-2026-000001")]
    assert InvoiceCounter.objects.get(year=2026).last == 1
    counts = invoices_run(month=date(2026, 10, 1), today=date(2026, 11, 1))
    assert (counts["existing"], counts["issued"]) == (1, 2)
    numbers = dict(Invoice.objects.values_list("organisation_id", "number"))
    assert numbers == {
        orgs[0].pk: "INV-2026-000001",
        orgs[1].pk: "INV-2026-000002",
        orgs[2].pk: "INV-2026-000003",
    }
    assert Organisation.objects.count() >= 3


def paid_pack(org, hours: int, paid_at, model: str = "H100-80GB"):
    from billing.models import HourPack

    owner = org.memberships.get(role="owner").user
    krw = 3000 * hours
    return HourPack.objects.create(
        organisation=org, gpu_model=model, gpu_hours=hours, krw_per_gpu_hour=3000, supply_krw=krw,
        vat_krw=krw // 10, total_krw=krw + krw // 10, status="paid", paid_at=paid_at, bought_by=owner,
    )  # fmt: skip


def test_a_month_that_only_drew_prepaid_hours_gets_a_statement_without_a_number(rates, jobs):
    prepaid, _ = startup()  # invoiced first (lower id)
    paying, _ = startup()
    grant_for(paying, intervals=[(at(2, 9), at(2, 19))])
    # 1 h subsidy at 0 %, then 4 h from a 10 h pack: ₩0.
    grant_for(prepaid, copay=0, hours=1, intervals=[(at(2, 9), at(2, 14))])
    pack = paid_pack(prepaid, 10, at(1, 0, month=10))
    with jobs.committed():
        counts = invoices_run(month=NOV, today=ISSUED)
    assert counts["issued"] == 2
    statement = Invoice.objects.get(organisation=prepaid)
    assert (statement.number, statement.total_krw, statement.status) == (None, 0, Invoice.Status.PAID)
    assert list(statement.lines.values_list("kind", "gpu_minutes", "hour_pack")) == [
        ("subsidised", 60, None),
        ("prepaid", 240, pack.pk),
    ]
    # The paying organisation's invoice is number 1 whatever the order: the statement took none.
    assert Invoice.objects.get(organisation=paying).number == "INV-2026-000001"
    assert InvoiceCounter.objects.get(year=2026).last == 1
    jobs.run()
    assert all(prepaid.memberships.get(role="billing").user.email not in m.to for m in mail.outbox)


def test_a_pack_drawn_in_one_month_is_not_drawn_again_the_next(rates):
    org, _ = startup()
    # 1 h subsidy at 20 %; a 10 h pack bought 1 Oct. October: 7 h = 1 h subsidised (600) + 6 h
    # prepaid. November: 6 h = 4 h left in the pack + 2 h billable x 3,000 = 6,000, VAT 600.
    grant_for(org, hours=1, intervals=[(at(2, 9, month=10), at(2, 16, month=10)), (at(3, 9), at(3, 15))])
    pack = paid_pack(org, 10, at(1, 0, month=10))
    october, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 10, 1), today=NOV)
    assert list(october.lines.values_list("kind", "gpu_minutes", "amount_krw")) == [
        ("subsidised", 60, 600),
        ("prepaid", 360, 0),
    ]
    november, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=ISSUED)
    assert list(november.lines.values_list("kind", "gpu_minutes", "amount_krw", "hour_pack")) == [
        ("prepaid", 240, 0, pack.pk),
        ("billable", 120, 6000, None),
    ]
    assert november.total_krw == 6600


def test_prepaid_lines_from_before_lines_named_their_pack_are_taken_from_the_oldest_packs(rates):
    org, _ = startup()
    # Subsidy 1 h at 20 %. Packs of 2 h bought 1 Sep (older) and 5 Sep. October: 1 h subsidised,
    # then 3 h prepaid, written (as before this change) without naming a pack: taken as the older
    # pack's 2 h and 1 h of the newer. November: 2 h = the newer pack's last hour + 1 h billable
    # x 3,000 = 3,000, VAT 300.
    grant_for(org, hours=1, intervals=[(at(2, 9, month=10), at(2, 13, month=10)), (at(3, 9), at(3, 11))])
    older = paid_pack(org, 2, at(1, 0, month=9))
    newer = paid_pack(org, 2, at(5, 0, month=9))
    october, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 10, 1), today=NOV)
    assert list(october.lines.filter(kind="prepaid").values_list("gpu_minutes", "hour_pack")) == [
        (120, older.pk),
        (60, newer.pk),
    ]
    october.lines.update(hour_pack=None)
    november, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=ISSUED)
    assert list(november.lines.values_list("kind", "gpu_minutes", "amount_krw", "hour_pack")) == [
        ("prepaid", 60, 0, newer.pk),
        ("billable", 60, 3000, None),
    ]
    assert november.total_krw == 3300


def test_an_invoicing_run_shows_its_progress_in_the_admin_while_it_runs(rates, client, monkeypatch):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    from billing.models import InvoicingRun
    from billing.services import invoices as invoice_services
    from tests.factories import UserFactory

    orgs = [startup()[0] for _ in range(3)]
    for org in orgs:
        grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    finance = UserFactory(is_staff=True, is_superuser=True)
    TOTP.activate(finance, generate_totp_secret())
    client.force_login(finance)
    seen: list[dict] = []
    real_issue = invoice_services.invoice_issue

    def issue_and_look(*, organisation_id, **kwargs):
        # Before each organisation, the operator looks at the run's page and its status endpoint.
        run = InvoicingRun.objects.get()
        seen.append(client.get(f"/admin/billing/invoicingrun/{run.pk}/progress/").json())
        if len(seen) == 3:
            page = client.get(f"/admin/billing/invoicingrun/{run.pk}/change/").content.decode()
            assert 'data-progress-url="/admin/billing/invoicingrun/' in page and "admin-progress.js" in page
            assert orgs[1].name_ko in page
        return real_issue(organisation_id=organisation_id, **kwargs)

    monkeypatch.setattr(invoice_services, "invoice_issue", issue_and_look)
    invoices_run(month=NOV, today=ISSUED, out=lambda line: None)
    assert [(x["done"], x["total"], x["finished"]) for x in seen] == [(0, 3, False), (1, 3, False), (2, 3, False)]
    assert seen[2]["counts"]["issued"] == 2 and orgs[1].name_ko in seen[2]["summary"]
    assert [len(x["steps"]) for x in seen] == [0, 1, 2] and seen[2]["steps"][1]["text"].startswith("[2/3]")
    run = InvoicingRun.objects.get()
    final = client.get(f"/admin/billing/invoicingrun/{run.pk}/progress/").json()
    assert (final["finished"], final["done"], final["counts"]["issued"]) == (True, 3, 3)
    client.force_login(UserFactory(is_staff=True))  # staff without billing access: nothing to see
    assert client.get(f"/admin/billing/invoicingrun/{run.pk}/progress/").status_code in (302, 403, 404)


def test_the_command_prints_each_organisation_with_its_name_and_the_elapsed_time(rates, capsys):
    orgs = [startup()[0] for _ in range(2)]
    for org in orgs:
        grant_for(org, intervals=[(at(2, 9, month=10), at(2, 19, month=10))])
    call_command("run_invoicing", "--month", "2026-10")
    lines = capsys.readouterr().out.splitlines()
    progress = [x for x in lines if x.startswith("[")]
    assert [x.split("]")[0] + "]" for x in progress] == ["[1/2]", "[2/2]"]
    assert all(org.name_ko in line and line.endswith(" s)") for org, line in zip(orgs, progress, strict=True))


def test_a_run_whose_worker_died_says_it_has_made_no_progress(rates, client):
    from datetime import timedelta

    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.utils import timezone

    from billing.models import InvoicingRun
    from billing.services.invoicing_runs import invoicing_run_start, invoicing_run_step
    from tests.factories import UserFactory

    finance = UserFactory(is_staff=True, is_superuser=True)
    TOTP.activate(finance, generate_totp_secret())
    client.force_login(finance)
    run = invoicing_run_start(month=NOV, total=40)
    invoicing_run_step(run=run, done=1, current="org", counts={}, line="[1/40] org: issued")
    url = f"/admin/billing/invoicingrun/{run.pk}/progress/"
    assert "no progress" not in client.get(url, HTTP_ACCEPT_LANGUAGE="en").json()["summary"]
    run.steps[-1]["at"] = (timezone.now() - timedelta(minutes=40)).isoformat()
    InvoicingRun.objects.filter(pk=run.pk).update(steps=run.steps)
    status = client.get(url, HTTP_ACCEPT_LANGUAGE="en").json()
    assert not status["finished"] and "no progress since" in status["summary"]


def test_finance_starts_a_months_invoicing_in_the_admin_and_follows_its_run(rates, client, jobs):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.utils import timezone

    from billing.models import InvoicingRun
    from tests.factories import UserFactory

    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9, month=10), at(2, 19, month=10))])
    finance = UserFactory(is_staff=True, is_superuser=True)
    TOTP.activate(finance, generate_totp_secret())
    client.force_login(finance)
    assert "/admin/billing/invoicingrun/start/" in client.get("/admin/billing/invoicingrun/").content.decode()
    now = f"{timezone.localdate():%Y-%m}"
    this_month = client.post("/admin/billing/invoicingrun/start/", {"month": now}, HTTP_ACCEPT_LANGUAGE="en")
    assert "Only a month that has ended can be invoiced." in this_month.content.decode()
    assert f'value="{now}"' in this_month.content.decode()  # what was typed stays
    with jobs.committed():
        response = client.post("/admin/billing/invoicingrun/start/", {"month": "2026-10"})
    assert response.status_code == 302 and not InvoicingRun.objects.exists()  # queued, not run in the request
    jobs.run()
    run = InvoicingRun.objects.get()
    assert (run.month, run.state, run.done, run.counts["issued"]) == (date(2026, 10, 1), "succeeded", 1, 1)
    assert Invoice.objects.filter(organisation=org, month=date(2026, 10, 1)).exists()
    client.force_login(UserFactory(is_staff=True))
    assert client.post("/admin/billing/invoicingrun/start/", {"month": "2026-10"}).status_code in (302, 403)
