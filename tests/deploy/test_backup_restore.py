"""Backups restore for real on the test cluster: the operator's drill script passes on the live
database, and the disaster itself (grants and numbered invoices, dump, the database dropped,
restore) brings back grants, invoices and the numbering identically, so the next invoice gets
the next number."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from allocations.models import Grant
from billing.models import Invoice, InvoiceCounter
from billing.services.invoices import invoice_issue
from tests.billing.helpers import at, grant_for, rate_card, startup

ROOT = Path(__file__).resolve().parent.parent.parent
BACKUP = ROOT / "deploy/backup"
OCT = date(2026, 10, 1)
ISSUED = date(2026, 11, 1)


def pg_bindir() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), key=lambda p: int(p.parts[4]))
    return str(found[-1].parent)


@pytest.fixture
def pg_env() -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "PGHOST": db["HOST"],
        "PGPORT": str(db["PORT"] or 5432),
        "PGUSER": db["USER"],
        "PG_BINDIR": pg_bindir(),
    }


def psql(env, dbname: str, sql: str) -> str:
    return subprocess.run(
        [f"{env['PG_BINDIR']}/psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-c", sql],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def databases(env) -> list[str]:
    return psql(env, "postgres", "SELECT datname FROM pg_database").splitlines()


def fingerprint(env, dbname: str) -> str:
    return subprocess.run(
        [f"{env['PG_BINDIR']}/psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname,
         "-f", str(BACKUP / "fingerprint.sql")],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def billed_organisations(count: int):
    """Organisations with charges in October, each with a grant on a node (assignments)."""
    rate_card("startup", 3000)
    orgs = []
    for _ in range(count):
        org, _ = startup()
        grant_for(org, gpus=2, intervals=[(at(2, 9, month=10), at(3, 19, month=10))], node=True)
        orgs.append(org)
    return orgs


@pytest.mark.django_db(transaction=True)
def test_the_restore_drill_script_passes_on_the_live_database(pg_env, tmp_path):
    orgs = billed_organisations(2)
    for org in orgs:
        invoice_issue(organisation_id=org.pk, month=OCT, today=ISSUED)
    result = subprocess.run(
        [str(BACKUP / "restore-drill.sh"), connection.settings_dict["NAME"], str(tmp_path)],
        env=pg_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restore drill: OK" in result.stdout
    before = (tmp_path / "before.txt").read_text()
    assert "billing_invoice|2|" in before and "billing_invoicecounter|1|" in before
    assert "allocations_grant|2|" in before
    drill = connection.settings_dict["NAME"] + "_drill"
    assert drill not in databases(pg_env)


@pytest.mark.django_db(transaction=True)
def test_dump_drop_and_restore_bring_back_grants_invoices_and_numbering_identically(pg_env, tmp_path):
    orgs = billed_organisations(3)
    for org in orgs[:2]:
        invoice_issue(organisation_id=org.pk, month=OCT, today=ISSUED)
    grants = sorted(Grant.objects.values_list("pk", "organisation_id", "status", "gpu_count", "starts_on", "ends_on"))
    invoices = sorted(Invoice.objects.values_list("number", "organisation_id", "total_krw", "status", "due_on"))
    assert [i[0] for i in invoices] == ["INV-2026-000001", "INV-2026-000002"]
    assert InvoiceCounter.objects.get(year=2026).last == 2

    # A copy of the test database stands for production: the test's own cannot be dropped.
    source = connection.settings_dict["NAME"]
    prod = f"{source}_prod"
    connection.close()  # CREATE DATABASE ... TEMPLATE needs the template without connections
    psql(pg_env, "postgres", f"DROP DATABASE IF EXISTS {prod}")
    psql(pg_env, "postgres", f"CREATE DATABASE {prod} TEMPLATE {source}")
    try:
        original = fingerprint(pg_env, prod)
        dump = tmp_path / "portal.dump"
        subprocess.run([str(BACKUP / "portal-dump.sh"), prod, str(dump)], env=pg_env, check=True, timeout=60)
        psql(pg_env, "postgres", f"DROP DATABASE {prod}")  # the disaster
        assert prod not in databases(pg_env)
        subprocess.run([str(BACKUP / "portal-restore.sh"), str(dump), prod], env=pg_env, check=True, timeout=60)

        assert fingerprint(pg_env, prod) == original
        restored_grants = psql(
            pg_env, prod, "SELECT id, organisation_id, status, gpu_count, starts_on, ends_on FROM allocations_grant"
            " ORDER BY id",
        )  # fmt: skip
        assert restored_grants.splitlines() == ["|".join(map(str, g)) for g in grants]
        restored_invoices = psql(
            pg_env,
            prod,
            "SELECT number, organisation_id, total_krw, status, due_on FROM billing_invoice ORDER BY number",
        )
        assert restored_invoices.splitlines() == ["|".join(map(str, i)) for i in invoices]
        assert psql(pg_env, prod, "SELECT year, last FROM billing_invoicecounter") == "2026|2"

        # The restored portal numbers on: the third organisation's invoice is INV-2026-000003.
        db = connection.settings_dict
        url = f"postgres://{db['USER']}@{db['HOST'].replace('/', '%2F')}:{db['PORT'] or 5432}/{prod}"
        code = (
            "import django; django.setup(); from datetime import date;"
            "from billing.services.invoices import invoice_issue;"
            f"inv, _ = invoice_issue(organisation_id={orgs[2].pk}, month=date(2026, 10, 1), today=date(2026, 11, 1));"
            "print(inv.number)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=django_settings.BASE_DIR, capture_output=True, text=True, timeout=60,
            env={**os.environ, "DATABASE_URL": url, "PORTAL_ENV": "test", "DJANGO_SETTINGS_MODULE": "portal.settings"},
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "INV-2026-000003"

        # The fingerprint notices a changed row: the comparison above could have failed.
        psql(pg_env, prod, "UPDATE billing_invoice SET due_on = due_on + 1 WHERE number = 'INV-2026-000001'")
        assert fingerprint(pg_env, prod) != original
    finally:
        psql(pg_env, "postgres", f"DROP DATABASE IF EXISTS {prod}")
