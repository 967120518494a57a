"""Usage hours: assigned GPU-minutes from access intervals, utilisation and energy from the
samples the nodes posted (over HTTP), rebuilt whole so reruns agree and late samples count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from allocations.models import UsageHour
from allocations.services.usage import grant_usage_summary, usage_hour_build, usage_hours_build_due, usage_hours_due
from tests.allocations.metering_helpers import metered_grant, node_with_gpus, post, samples_every_minute

pytestmark = pytest.mark.django_db


@pytest.fixture
def hour():
    """A complete hour, three hours ago (UTC)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def rows(hour):
    return list(
        UsageHour.objects.filter(hour=hour)
        .order_by("grant_id")
        .values_list("grant_id", "gpu_minutes", "sample_count", "avg_utilization", "energy_wh")
    )


def test_an_hour_counts_assigned_minutes_utilisation_and_energy_while_access_was_open(hour):
    node, token, gpus = node_with_gpus()
    grant = metered_grant(gpus[:2], opened_at=hour + timedelta(minutes=10), closed_at=hour + timedelta(minutes=40))
    client = Client()
    body = samples_every_minute(gpus[:3], hour.timestamp(), 60, utilization=50, power_w=300.0)
    assert post(client, node.hostname, token, body).status_code == 201
    usage_hour_build(hour=hour)
    row = UsageHour.objects.get(grant=grant, hour=hour)
    assert row.gpu_minutes == 2 * 30
    assert row.sample_count == 2 * 30  # the third GPU is not the grant's; outside the interval does not count
    assert row.avg_utilization == 50
    assert row.energy_wh == pytest.approx(2 * 30 * 300 / 60)  # 60 one-minute samples at 300 W = 300 Wh
    summary = grant_usage_summary(grant)
    assert summary["gpu_hours_used"] == 1.0 and summary["energy_kwh"] == 0.3 and summary["avg_utilization"] == 50


def test_rebuilding_an_hour_gives_identical_rows(hour):
    node, token, gpus = node_with_gpus()
    metered_grant(gpus[:4], opened_at=hour - timedelta(hours=1))
    metered_grant(gpus[4:], opened_at=hour + timedelta(minutes=17, seconds=30))
    body = samples_every_minute(gpus, hour.timestamp() + 7, 60, utilization=37, power_w=512.25)
    assert post(Client(), node.hostname, token, body).status_code == 201
    usage_hour_build(hour=hour)
    first = rows(hour)
    usage_hour_build(hour=hour)
    usage_hour_build(hour=hour)
    assert rows(hour) == first
    assert [r[1] for r in first] == [4 * 60, 4 * 42]
    assert UsageHour.objects.count() == 2


def test_late_samples_are_folded_in_on_the_next_run(hour):
    """A node offline for hours posts its backlog: the job rebuilds the hours that batch covers
    even when they are older than the usual rebuild window."""
    node, token, gpus = node_with_gpus()
    grant = metered_grant(gpus[:1], opened_at=hour - timedelta(hours=1))
    client = Client()
    first = samples_every_minute(gpus[:1], hour.timestamp(), 30, utilization=80)
    assert post(client, node.hostname, token, first).status_code == 201
    usage_hour_build(hour=hour)
    assert UsageHour.objects.get(grant=grant, hour=hour).sample_count == 30
    late = samples_every_minute(gpus[:1], hour.timestamp() + 30 * 60, 30, utilization=20)
    assert post(client, node.hostname, token, late).status_code == 201
    now = hour + timedelta(hours=30)  # far beyond the rebuild window, but the batch is recent
    assert hour in usage_hours_due(now=datetime.now(UTC))
    usage_hours_build_due()
    row = UsageHour.objects.get(grant=grant, hour=hour)
    assert (row.sample_count, row.avg_utilization) == (60, 50)
    assert hour not in usage_hours_due(now=now)  # nothing was received recently for it any more


def test_a_grant_without_samples_still_counts_its_assigned_minutes(hour):
    _node, _token, gpus = node_with_gpus()
    grant = metered_grant(gpus[:8], opened_at=hour - timedelta(days=1))
    usage_hour_build(hour=hour)
    row = UsageHour.objects.get(grant=grant, hour=hour)
    assert (row.gpu_minutes, row.sample_count, row.avg_utilization, row.energy_wh) == (480, 0, None, 0)
