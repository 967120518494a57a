"""Members see what their grant used (GPU-hours against the subsidy, utilisation, energy) on the
grant page and the dashboard; reviewers see the organisation's past grants' use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from allocations.models import UsageHour
from allocations.services.usage import usage_hour_build
from portal.services import applications as svc
from tests.allocations.metering_helpers import metered_grant, node_with_gpus, post, samples_every_minute
from tests.factories import ApplicationFactory
from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def used_grant():
    """A 2-GPU grant (100 subsidised GPU-hours) that used its GPUs for one whole hour at 40 %
    and 250 W: 2 GPU-hours, 0.5 kWh."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    node, token, gpus = node_with_gpus()
    grant = metered_grant(gpus[:2], opened_at=hour, closed_at=hour + timedelta(hours=1))
    body = samples_every_minute(gpus[:2], hour.timestamp(), 60, utilization=40, power_w=250.0)
    assert post(Client(), node.hostname, token, body).status_code == 201
    usage_hour_build(hour=hour)
    return grant


def test_the_grant_page_shows_use_against_the_subsidy(client, used_grant):
    client.force_login(used_grant.application.principal_investigator)
    body = client.get(f"/grants/{used_grant.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "2.0 of 100 subsidised (2.0%)" in body
    assert "40.0%" in body
    assert "0.50 kWh" in body


def test_the_grant_page_speaks_korean(client, used_grant):
    client.force_login(used_grant.application.principal_investigator)
    body = client.get(f"/grants/{used_grant.pk}/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "사용한 GPU 시간" in body


def test_the_dashboard_lists_each_grants_use(client, used_grant, django_assert_max_num_queries):
    client.force_login(used_grant.application.principal_investigator)
    with django_assert_max_num_queries(18):  # 12 + the charts' 6 (portal.services.dashboard)
        body = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "2.0 / 100 (2.0%)" in body
    assert "0.5 kWh" in body


def test_the_review_page_shows_the_organisations_past_use(client, used_grant):
    app = ApplicationFactory(organisation=used_grant.organisation)
    app = svc.application_submit(application=app, actor=app.principal_investigator)
    client.force_login(staff_user("reviewer@ministry.go.kr", *REVIEWER_PERMS))
    body = client.get(f"/admin/portal/application/{app.pk}/review/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "used 2.0 of 100 GPU-hours (2.0%), utilisation 40.0%, 0.5 kWh" in body


def test_the_review_page_charts_the_past_grants_awards_against_their_use(client, used_grant):
    app = ApplicationFactory(organisation=used_grant.organisation)
    app = svc.application_submit(application=app, actor=app.principal_investigator)
    client.force_login(staff_user("reviewer@ministry.go.kr", *REVIEWER_PERMS))
    body = client.get(f"/admin/portal/application/{app.pk}/review/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<svg class="chart" id="history-grants" role="img"' in body
    assert "Past grants: GPU-hours awarded and used" in body
    assert f"#{used_grant.pk} {used_grant.application.title}"[:24] in body  # the bar's label
    assert "2 / 100" in body  # used / awarded beside the bars
    assert " style=" not in body.split('id="history-grants"')[1].split("</svg>")[0]


def chart(body: str, chart_id: str) -> str:
    start = body.index(f'id="{chart_id}"')
    return body[body.rindex("<svg", 0, start) : body.index("</svg>", start)]


def test_the_grant_page_draws_the_same_charts_as_the_dashboard(client, used_grant):
    client.force_login(used_grant.application.principal_investigator)
    page = client.get(f"/grants/{used_grant.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    dashboard = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    for name in ("util-7", "util-30", "energy"):
        drawn = chart(page, f"grant-{used_grant.pk}-{name}")
        assert drawn == chart(dashboard, f"grant-{used_grant.pk}-{name}") and 'role="img"' in drawn
        assert " style=" not in drawn and "<script" not in drawn  # the strict CSP
    assert f'id="grant-{used_grant.pk}-subsidy"' in page
    captions = [x.split("</figcaption>")[0] for x in page.split("<figcaption>")[1:]]
    assert captions == [
        "Subsidised GPU-hours: 2.0 of 100 used, 98.0 left",
        "Utilisation, last 7 days: 40.0%",
        "Utilisation, last 30 days: 40.0%",
        "Energy, last 30 days: 0.50 kWh",
    ]
    assert "Use per day, last 30 days" in page  # the same numbers as a table


def test_the_grant_pages_queries_do_not_grow_with_days_of_use(client, used_grant):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(used_grant.application.principal_investigator)
    client.get(f"/grants/{used_grant.pk}/", HTTP_ACCEPT_LANGUAGE="en")
    with CaptureQueriesContext(connection) as one_day:
        client.get(f"/grants/{used_grant.pk}/", HTTP_ACCEPT_LANGUAGE="en")
    for days_ago in (3, 9, 20):
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
        UsageHour.objects.create(
            grant=used_grant, hour=hour, gpu_minutes=120, sample_count=120, avg_utilization=70.0, energy_wh=600
        )
    with CaptureQueriesContext(connection) as four_days:
        body = client.get(f"/grants/{used_grant.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert len(four_days.captured_queries) == len(one_day.captured_queries)
    assert "70.0%" in body  # the other days are drawn
