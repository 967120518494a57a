"""The dashboard shows each grant's use as charts that work under the strict CSP (SVG rendered on
the server, with a title, a description and the numbers in a table), the open notices, copyable
commands, and to an organisation's owners the organisation's totals and each grant's share."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from allocations.models import Notice
from allocations.services.usage import usage_hour_build
from portal import charts
from portal.models import Membership
from tests.allocations.metering_helpers import metered_grant, node_with_gpus, post, samples_every_minute
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def used_grant(gpus, hour, utilization=40):
    grant = metered_grant(gpus, opened_at=hour, closed_at=hour + timedelta(hours=1))
    body = samples_every_minute(gpus, hour.timestamp(), 60, utilization=utilization, power_w=250.0)
    return grant, body


@pytest.fixture
def grant():
    """A 2-GPU grant that used its GPUs for one hour at 40 % and 250 W: 2 GPU-hours, 0.5 kWh."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    node, token, gpus = node_with_gpus()
    grant, body = used_grant(gpus[:2], hour)
    assert post(Client(), node.hostname, token, body).status_code == 201
    usage_hour_build(hour=hour)
    return grant


def dashboard(client, user, lang="en") -> str:
    client.force_login(user)
    response = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE=lang)
    assert response.status_code == 200
    return response.content.decode()


def test_the_dashboard_charts_a_grants_use_as_accessible_svg(client, grant):
    body = dashboard(client, grant.application.principal_investigator)
    for chart in ("subsidy", "util-7", "util-30", "energy"):
        assert f'id="grant-{grant.pk}-{chart}" role="img"' in body
    assert "<title id=" in body and "<desc id=" in body
    assert "Average utilisation of the grant&#x27;s GPUs per day: 40.0% over the last 7 days." in body
    assert "0.50 kWh used by the grant&#x27;s GPUs over the last 30 days." in body
    # The same numbers as text: today's row of the table.
    assert re.search(r"<td>2\.0</td><td>40\.0%</td><td>0\.50 kWh</td>", body)


def test_no_chart_uses_an_inline_style_or_script(client, grant):
    body = dashboard(client, grant.application.principal_investigator)
    assert " style=" not in body
    assert "<script>" not in body and "<script " not in body.replace('<script src="/static/', "")


def test_the_dashboard_speaks_korean_with_localised_numbers(client, grant):
    body = dashboard(client, grant.application.principal_investigator, "ko")
    assert "최근 7일 GPU 사용률" in body
    assert "지원 GPU 시간" in body


def test_the_dashboard_says_why_its_hours_used_and_its_month_can_differ(client, grant):
    """The usage columns come from hourly usage rows, "This month" from access up to this
    minute: a reader seeing two numbers of hours is told which is which, in their language."""
    pi = grant.application.principal_investigator
    assert "counted up to the last full hour" in dashboard(client, pi)
    assert "마지막 정각까지 집계합니다" in dashboard(client, pi, "ko")


def test_an_idle_notice_and_a_due_invoice_are_shown_as_open_notices(client, grant):
    Notice.objects.create(
        kind=Notice.Kind.IDLE, key=f"idle:{grant.pk}", grant=grant, details={"hours": 6, "threshold": 5}
    )
    body = dashboard(client, grant.application.principal_investigator)
    assert "have been below 5% utilisation for 6 hours" in body
    assert "Nothing needs your attention" not in body


def test_with_nothing_open_the_dashboard_says_so(client, grant):
    body = dashboard(client, grant.application.principal_investigator)
    assert "Nothing needs your attention" in body


def test_an_owner_sees_the_organisations_totals_and_each_grants_share(client, grant):
    owner = MembershipFactory(organisation=grant.organisation, role=Membership.Role.OWNER).user
    body = dashboard(client, owner)
    assert f'id="org-{grant.organisation.pk}-grants" role="img"' in body
    assert "2.0 of 100 awarded GPU-hours used, 0.50 kWh." in body
    assert "100.0%" in body  # the one grant's share


def test_a_member_who_is_not_an_owner_sees_no_organisation_totals(client, grant):
    member = MembershipFactory(organisation=grant.organisation, role=Membership.Role.MEMBER).user
    body = dashboard(client, member)
    assert "awarded GPU-hours used" not in body


def test_a_user_of_another_organisation_sees_nothing_of_the_grant(client, grant):
    body = dashboard(client, UserFactory())
    assert grant.application.title not in body
    assert f"grant-{grant.pk}-" not in body


def test_the_gauge_is_full_but_not_beyond_when_the_subsidy_is_used_up():
    svg = str(charts.gauge(chart_id="g", used=150, total=100, title="t", desc="d"))
    assert 'width="320.0"' in svg and ">100%<" in svg


def test_an_overdue_invoice_is_a_notice_for_owners_and_billing_members_only(client, grant):
    from datetime import date

    from billing.services.invoices import invoice_issue
    from tests.billing.helpers import at, grant_for, rate_card

    rate_card("academic", 2000)
    org = grant.organisation
    owner = MembershipFactory(organisation=org, role=Membership.Role.OWNER).user
    billing = MembershipFactory(organisation=org, role=Membership.Role.BILLING).user
    member = MembershipFactory(organisation=org, role=Membership.Role.MEMBER).user
    grant_for(org, intervals=[(at(2, 9, month=10), at(3, 9, month=10))], copay=20)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 10, 1), today=date(2026, 11, 1))
    assert invoice.is_overdue()
    for user in (owner, billing):
        body = dashboard(client, user)
        assert f"Invoice {invoice.number} of {org.name}" in body and "is overdue" in body
    assert invoice.number not in dashboard(client, member)
