"""The samples table's daily partitions: created ahead, dropped whole after the retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from allocations.jobs import metering_partitions_job
from allocations.services.sample_partitions import _existing, forget_known_partitions, sample_partitions_ensure

pytestmark = pytest.mark.django_db


def test_the_job_creates_the_coming_days_and_drops_expired_days(settings):
    settings.METERING_RETENTION_DAYS = 30
    settings.METERING_PARTITIONS_AHEAD_DAYS = 3
    forget_known_partitions()
    today = datetime.now(UTC).date()
    old = today - timedelta(days=31)
    kept = today - timedelta(days=29)
    sample_partitions_ensure(days={old, kept})
    result = metering_partitions_job()
    days = set(_existing())
    assert {today + timedelta(days=n) for n in range(4)} <= days
    assert kept in days
    assert old not in days
    assert result["dropped"] == [f"allocations_gpusample_p{old:%Y%m%d}"]
