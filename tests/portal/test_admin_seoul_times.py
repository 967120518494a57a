"""The admin's times are Seoul time and say so (docs/operations.md), in both languages: an
invoicing run's title, the steps of a job's progress (the page and the JSON the poller redraws
from), and a grant's GPU assignments' periods, never a bare UTC time or a raw range."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

from allocations.models import Node, NodeOperation
from billing.models import InvoicingRun
from portal.progress import step_entry
from tests.allocations.test_admin_confirmations import placed  # noqa: F401 - fixture
from tests.portal.test_review_admin import staff_user

pytestmark = pytest.mark.django_db

# 00:25:49 UTC is 09:25:49 in Seoul.
AT = datetime(2026, 11, 30, 0, 25, 49, 123456, tzinfo=UTC)
LANGUAGES = ["en", "ko"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_invoicing_runs_title_and_steps_are_in_seoul_time_with_the_zone(client, language):
    run = InvoicingRun.objects.create(
        month=date(2026, 9, 1), total=2, started_at=AT, steps=[step_entry("[1/2] org: issued", at=AT)]
    )
    client.force_login(staff_user("finance-kst@ministry.go.kr", "billing.view_invoice"))

    assert str(run) == "2026-09 (2026-11-30 09:25 KST)"
    page = client.get(f"/admin/billing/invoicingrun/{run.pk}/change/", HTTP_ACCEPT_LANGUAGE=language)
    body = page.content.decode()
    assert "2026-09 (2026-11-30 09:25 KST)" in body and "00:25" not in body
    assert "09:25:49 KST</time> [1/2] org: issued" in body
    data = client.get(f"/admin/billing/invoicingrun/{run.pk}/progress/", HTTP_ACCEPT_LANGUAGE=language).json()
    assert data["steps"][-1]["time"] == "09:25:49 KST"
    assert data["steps"][-1]["at"].startswith("2026-11-30T09:25:49")  # the machine-readable moment, Seoul


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_node_operations_steps_are_in_seoul_time_with_the_zone(client, language):
    node = Node.objects.create(hostname="kst-node-1", address="127.0.0.1", gpu_model="H100-80GB")
    operation = NodeOperation.objects.create(
        node=node, kind=NodeOperation.Kind.INVENTORY, steps=[step_entry("started on a worker", at=AT)]
    )
    client.force_login(staff_user("operator-kst@ministry.go.kr", "allocations.view_node"))

    page = client.get(f"/admin/allocations/nodeoperation/{operation.pk}/change/", HTTP_ACCEPT_LANGUAGE=language)
    body = page.content.decode()
    assert "09:25:49 KST</time> started on a worker" in body and "00:25:49" not in body
    data = client.get(f"/admin/allocations/nodeoperation/{operation.pk}/progress/", HTTP_ACCEPT_LANGUAGE=language)
    data = data.json()
    assert [s["time"] for s in data["steps"]] == ["09:25:49 KST"]
    assert "09:25 KST" in data["summary"]  # "no progress since …": the step is long past


def test_the_progress_script_draws_the_seoul_time_it_is_given():
    with open("static/js/admin-progress.js", encoding="utf-8") as script:
        js = script.read()
    assert "step.time" in js and "slice(11" not in js


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_grants_gpu_assignments_show_their_period_in_seoul_time(client, placed, language):  # noqa: F811
    grant, _node = placed
    client.force_login(staff_user("grants-kst@ministry.go.kr", "allocations.view_grant", "allocations.view_assignment"))
    assignment = grant.assignments.order_by("pk").first()
    end = datetime(2027, 2, 28, 15, 0, tzinfo=UTC)
    grant.assignments.filter(pk=assignment.pk).update(period=DateTimeTZRange(AT, end, "[)"))

    page = client.get(f"/admin/allocations/grant/{grant.pk}/change/", HTTP_ACCEPT_LANGUAGE=language)
    body = page.content.decode()
    assert "2026-11-30 09:25 KST – 2027-03-01 00:00 KST" in body
    assert "+00:00" not in body and "DateTimeTZRange" not in body
