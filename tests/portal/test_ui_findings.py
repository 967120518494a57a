"""Attacks on the dashboard charts, the fleet page, admin job progress, "Invoice a month" and the
cached admin sidebar (issues 12 and 13): markup in names is text everywhere, each page follows
who the user is now, and charts stay valid SVG whatever the numbers."""

from __future__ import annotations

import math
import re
from datetime import date

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from allocations.models import Gpu, GpuModel, Node, NodeOperation
from allocations.services.node_operations import node_operation_step
from billing.models import Invoice
from billing.services.invoicing_runs import RUN_JOB, invoicing_run_start, invoicing_run_step
from portal import charts
from portal.models import Membership, OutboxMessage
from tests.billing.helpers import rate_card, startup
from tests.billing.test_attacks import issue
from tests.factories import MembershipFactory
from tests.portal.test_dashboard_charts import dashboard, grant  # noqa: F401 - the fixture
from tests.portal.test_review_admin import staff_user

pytestmark = pytest.mark.django_db

XSS = '</title></desc><script>alert(1)</script>"><svg onload=alert(2)>'


def assert_no_markup_from(body: str) -> None:
    assert "<script>alert" not in body
    assert "<svg onload" not in body
    assert "</desc><script>" not in body


def owner_of(grant):  # noqa: F811 - the fixture's name
    user = grant.application.principal_investigator
    Membership.objects.update_or_create(
        user=user, organisation=grant.organisation, defaults={"role": Membership.Role.OWNER}
    )
    return user


# --- XSS -----------------------------------------------------------------------------------


def test_a_title_and_an_organisation_name_with_markup_are_text_in_every_chart_and_panel(client, grant):  # noqa: F811
    grant.application.title = XSS
    grant.application.save(update_fields=["title"])
    grant.organisation.name_ko = XSS
    grant.organisation.name_en = XSS
    grant.organisation.save()
    user = owner_of(grant)
    body = dashboard(client, user)
    assert f'id="org-{grant.organisation.pk}-grants" role="img"' in body  # the owner's chart is drawn
    assert_no_markup_from(body)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_gpu_models_and_hostnames_with_markup_are_text_on_the_fleet_page(client):
    GpuModel.objects.create(code="XSS-1", name=XSS, memory_gib=80)
    node = Node.objects.create(hostname='n1"><svg onload=alert(2)>', address="127.0.0.1", gpu_model="XSS-1")
    Gpu.objects.create(node=node, index=0, uuid="GPU-xss-0", model="XSS-1", memory_mib=1)
    operator = staff_user("fleet-xss@ministry.go.kr", "allocations.view_node")
    client.force_login(operator)
    response = client.get("/admin/fleet/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="img"' in body  # the capacity chart, with the model's name in it
    assert_no_markup_from(body)


def test_progress_text_with_markup_is_text_in_the_panel_and_the_script_never_parses_it_as_html(client):
    run = invoicing_run_start(month=date(2026, 10, 1), total=2)
    invoicing_run_step(run=run, done=1, current=XSS, counts={}, line=XSS)
    finance = staff_user("progress-xss@ministry.go.kr", "billing.view_invoice")
    client.force_login(finance)
    page = client.get(f"/admin/billing/invoicingrun/{run.pk}/change/")
    assert page.status_code == 200
    assert_no_markup_from(page.content.decode())
    data = client.get(f"/admin/billing/invoicingrun/{run.pk}/progress/").json()
    assert XSS in data["summary"] and data["steps"][-1]["text"] == XSS  # JSON: the script's to draw
    with open("static/js/admin-progress.js", encoding="utf-8") as script:
        js = script.read()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "textContent" in js


# --- who may see what ----------------------------------------------------------------------


def test_the_progress_endpoint_is_refused_to_staff_who_may_not_view_the_row(client):
    run = invoicing_run_start(month=date(2026, 10, 1), total=1)
    node = Node.objects.create(hostname="op-node-1", address="127.0.0.1", gpu_model="H100-80GB")
    operation = NodeOperation.objects.create(node=node, kind=NodeOperation.Kind.INVENTORY)
    node_operation_step(operation=operation, text=XSS)
    runs, operations = f"/admin/billing/invoicingrun/{run.pk}/", f"/admin/allocations/nodeoperation/{operation.pk}/"
    reviewer = staff_user("progress-noperm@ministry.go.kr", "portal.view_application", "allocations.view_nodeoperation")
    client.force_login(reviewer)
    assert client.get(runs + "progress/").status_code in (403, 404)
    assert client.get(operations + "progress/").status_code in (403, 404)
    # Node operations are shown to whoever may see nodes (NodeOperationAdmin), not to the rest.
    operator = staff_user("progress-operator@ministry.go.kr", "allocations.view_node")
    client.force_login(operator)
    assert client.get(runs + "progress/").status_code in (403, 404)  # a node operator is not finance
    assert client.get(operations + "progress/").json()["steps"][-1]["text"] == XSS
    page = client.get(operations + "change/")
    assert page.status_code == 200
    assert_no_markup_from(page.content.decode())


def test_the_fleet_page_is_refused_to_staff_without_the_node_permission(client):
    reviewer = staff_user("fleet-noperm@ministry.go.kr", "portal.view_application")
    client.force_login(reviewer)
    assert client.get("/admin/fleet/").status_code == 403


def test_a_removed_owner_no_longer_sees_the_organisations_totals(client, grant):  # noqa: F811
    user = owner_of(grant)
    assert f'id="org-panel-{grant.organisation.pk}"' in dashboard(client, user)
    Membership.objects.filter(user=user, organisation=grant.organisation).update(role=Membership.Role.MEMBER)
    assert f'id="org-panel-{grant.organisation.pk}"' not in dashboard(client, user)


def test_only_owners_see_the_organisations_totals_and_only_owners_and_billing_members_its_invoices_due(client):
    rate_card("startup", 3000)
    org, owner = startup()
    invoice = issue(org)
    assert invoice.status == Invoice.Status.OPEN
    billing = org.memberships.get(role=Membership.Role.BILLING).user
    member = MembershipFactory(organisation=org).user
    panel = f'id="org-panel-{org.pk}"'
    body = dashboard(client, owner)
    assert invoice.number in body and panel in body
    body = dashboard(client, billing)
    assert invoice.number in body and panel not in body
    body = dashboard(client, member)
    assert invoice.number not in body and panel not in body
    org.memberships.filter(user=billing).delete()  # removed: nothing of the organisation any more
    body = dashboard(client, billing)
    assert invoice.number not in body and panel not in body


def test_the_sidebar_of_a_user_who_may_add_calls_is_not_served_to_one_who_may_only_view_them(client):
    page = "/admin/portal/call/"
    adder = staff_user("sidebar-adder@ministry.go.kr", "portal.view_call", "portal.add_call")
    viewer = staff_user("sidebar-viewer@ministry.go.kr", "portal.view_call")
    client.force_login(adder)
    assert 'href="/admin/portal/call/add/"' in client.get(page).content.decode()
    client.force_login(viewer)
    assert 'href="/admin/portal/call/add/"' not in client.get(page).content.decode()
    viewer.groups.get().permissions.add(Permission.objects.get(codename="add_call"))
    assert 'href="/admin/portal/call/add/"' in client.get(page).content.decode()


# --- Invoice a month -----------------------------------------------------------------------

START = "/admin/billing/invoicingrun/start/"


def test_invoicing_a_month_is_refused_without_the_permission_and_without_the_csrf_token():
    viewer = staff_user("invoice-viewer@ministry.go.kr", "billing.view_invoice")
    finance = staff_user("invoice-finance@ministry.go.kr", "billing.view_invoice", "billing.add_invoicingrun")
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer)
    assert client.get(START).status_code == 403
    client.force_login(finance)
    assert client.post(START, {"month": "2026-10"}).status_code == 403  # no CSRF token
    assert not OutboxMessage.objects.filter(func=RUN_JOB).exists()


def test_the_current_and_a_future_month_cannot_be_invoiced(client):
    finance = staff_user("invoice-now@ministry.go.kr", "billing.view_invoice", "billing.add_invoicingrun")
    client.force_login(finance)
    today = timezone.localdate()
    for month in (f"{today:%Y-%m}", f"{today.year + 1}-01"):
        response = client.post(START, {"month": month})
        assert response.status_code == 200
        assert 'class="errorlist' in response.content.decode()  # the form again, with the refusal
    assert not OutboxMessage.objects.filter(func=RUN_JOB).exists()


def test_submitting_the_same_month_twice_queues_its_invoicing_once(client):
    finance = staff_user("invoice-twice@ministry.go.kr", "billing.view_invoice", "billing.add_invoicingrun")
    client.force_login(finance)
    assert client.post(START, {"month": "2026-10"}).status_code == 302
    assert client.post(START, {"month": "2026-10"}).status_code in (200, 302)
    assert OutboxMessage.objects.filter(func=RUN_JOB, args=["2026-10-01"]).count() == 1


# --- charts with extreme numbers -----------------------------------------------------------

NAN = float("nan")


def widths(svg: str) -> list[str]:
    return re.findall(r'\s(?:width|height|y)="([^"]*)"', svg)


def assert_valid_lengths(svg: str) -> None:
    for value in widths(svg):
        number = float(value)
        assert math.isfinite(number) and number >= 0, svg


@pytest.mark.parametrize("used, total", [(5, 0), (NAN, 10), (-5, 10), (None, 10), (10**9, 10**9), (1, NAN), (3, -10)])
def test_the_gauge_is_valid_svg_whatever_the_numbers(used, total):
    assert_valid_lengths(charts.gauge(chart_id="g", used=used, total=total, title="t", desc="d"))


@pytest.mark.parametrize("value, top", [(NAN, 100), (-3, 100), (3, NAN), (3, -5), (10**9, 100), (5, 0)])
def test_columns_are_valid_svg_whatever_the_numbers(value, top):
    points = [charts.Point("a", value), charts.Point("b", 1.0)]
    assert_valid_lengths(charts.columns(chart_id="c", points=points, top=top, title="t", desc="d"))


@pytest.mark.parametrize(
    "awarded, used", [(0, 0), (0, 5), (10, -4), (-10, 4), (NAN, 3), (3, NAN), (10, None), (None, 3), (1e9, 1e12)]
)
def test_paired_bars_are_valid_svg_whatever_the_numbers(awarded, used):
    pairs = [charts.Pair("x", awarded, used), charts.Pair("y", 10, 5)]
    assert_valid_lengths(charts.paired_bars(chart_id="p", pairs=pairs, title="t", desc="d"))


def test_a_month_whose_queued_run_has_started_can_be_queued_again(client):
    finance = staff_user("invoice-again@ministry.go.kr", "billing.view_invoice", "billing.add_invoicingrun")
    client.force_login(finance)
    assert client.post(START, {"month": "2026-10"}).status_code == 302
    invoicing_run_start(month=date(2026, 10, 1), total=0)  # a worker took it
    assert client.post(START, {"month": "2026-10"}).status_code == 302
    assert client.post(START, {"month": "2026-09"}).status_code == 302  # another month is its own
    assert OutboxMessage.objects.filter(func=RUN_JOB, args=["2026-10-01"]).count() == 2
    assert OutboxMessage.objects.filter(func=RUN_JOB, args=["2026-09-01"]).count() == 1


def test_a_member_off_the_team_and_another_organisations_owner_see_neither_the_grants_panel_nor_its_page(
    client,
    grant,  # noqa: F811
):
    page = reverse("allocations:grant_detail", args=[grant.pk])
    panel = f'id="grant-panel-{grant.pk}"'
    assert panel in dashboard(client, grant.application.principal_investigator)
    colleague = MembershipFactory(organisation=grant.organisation).user
    stranger = MembershipFactory(role=Membership.Role.OWNER).user
    for user in (colleague, stranger):
        body = dashboard(client, user)
        assert panel not in body and f'id="grant-{grant.pk}-subsidy"' not in body
        assert client.get(page).status_code == 404
