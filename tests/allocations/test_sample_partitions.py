"""The samples table's daily partitions: created ahead, dropped whole after the retention."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from allocations.jobs import metering_partitions_job
from allocations.models import GpuSample, SampleBatch
from allocations.services.sample_ingest import BatchRejected, samples_ingest
from allocations.services.sample_partitions import (
    _existing,
    forget_known_partitions,
    sample_batches_prune,
    sample_partitions_ensure,
)
from tests.allocations.metering_helpers import batch, node_with_gpus

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


def _batches(node, *received_at) -> None:
    SampleBatch.objects.bulk_create(
        SampleBatch(
            node=node, batch_id=secrets.token_hex(8), received_at=at, sample_count=8, first_time=at, last_time=at
        )
        for at in received_at
    )


def test_batch_rows_past_the_retention_are_pruned_by_the_job_in_bounded_chunks(settings):
    """10.8 M batch rows a day at 60,000 GPUs: kept forever, they grew without bound."""
    settings.METERING_RETENTION_DAYS = 30
    settings.METERING_BATCH_PRUNE_CHUNK = 3
    node, _token, _gpus = node_with_gpus()
    now = datetime.now(UTC)
    _batches(node, *[now - timedelta(days=31, minutes=i) for i in range(7)])
    _batches(node, now - timedelta(days=29), now - timedelta(minutes=1))  # a resend must still count once
    with CaptureQueriesContext(connection) as queries:
        result = metering_partitions_job()
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE FROM allocations_samplebatch")]
    assert len(deletes) == 3 and all("LIMIT 3" in sql for sql in deletes)  # 3 + 3 + 1, never one huge DELETE
    assert result["batches_pruned"] == 7
    assert sorted(SampleBatch.objects.values_list("received_at", flat=True)) == [
        now - timedelta(days=29),
        now - timedelta(minutes=1),
    ]


def test_a_run_deletes_at_most_its_chunk_budget_and_the_next_run_goes_on(settings):
    settings.METERING_BATCH_PRUNE_CHUNK = 2
    settings.METERING_BATCH_PRUNE_MAX_CHUNKS = 2
    node, _token, _gpus = node_with_gpus()
    _batches(node, *[datetime.now(UTC) - timedelta(days=40, minutes=i) for i in range(5)])
    assert sample_batches_prune() == 4
    assert sample_batches_prune() == 1
    assert not SampleBatch.objects.exists()


def test_a_batch_resent_after_its_row_was_pruned_is_refused_and_counts_nothing_twice(settings):
    """Its samples are still in a partition (dropped by day, a day later): storing the resend
    would count them twice."""
    settings.METERING_RETENTION_DAYS = 30
    now = datetime.now(UTC)
    node, _token, gpus = node_with_gpus()
    received = now - timedelta(days=30) + timedelta(minutes=30)  # in time then
    body = batch(gpus, at=(received - timedelta(minutes=1)).timestamp())
    assert samples_ingest(node=node, payload=body, now=received).stored == 8
    assert sample_batches_prune(now=now) == 1
    assert GpuSample.objects.filter(node_id=node.pk).count() == 8  # its partition is still there
    with pytest.raises(BatchRejected) as refused:
        samples_ingest(node=node, payload=body, now=now)
    assert refused.value.code == "too_old" and refused.value.http_status == 422
    assert GpuSample.objects.filter(node_id=node.pk).count() == 8
    assert not SampleBatch.objects.exists()


def test_a_batch_still_accepted_on_a_resend_keeps_its_row(settings):
    settings.METERING_RETENTION_DAYS = 30
    now = datetime.now(UTC)
    node, _token, gpus = node_with_gpus()
    received = now - timedelta(days=30) + timedelta(hours=1, minutes=10)  # its samples are still accepted
    body = batch(gpus, at=(received - timedelta(minutes=1)).timestamp())
    samples_ingest(node=node, payload=body, now=received)
    assert sample_batches_prune(now=now) == 0
    assert samples_ingest(node=node, payload=body, now=now).duplicate is True
    assert GpuSample.objects.filter(node_id=node.pk).count() == 8
