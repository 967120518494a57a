"""The daily partitions of allocations_gpusample: created ahead (and on demand for a day a
catching-up node reports), dropped whole after the retention period, never deleted row by row.
Their batch rows (allocations_samplebatch: a resent batch counts once) are pruned beside them, in
bounded chunks, once a resend of the batch would be refused as too old anyway."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

PARENT = "allocations_gpusample"
_known: set[date] = set()


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _existing() -> dict[date, str]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [PARENT],
        )
        names = [row[0] for row in cur.fetchall()]
    return {datetime.strptime(n[-8:], "%Y%m%d").date(): n for n in names if n[-9:-8] == "p"}


def sample_partitions_ensure(*, days: set[date] | None = None) -> list[str]:
    """Create the partitions (UTC days) for `days`, or from today to the configured days ahead.
    Idempotent and safe to run concurrently (IF NOT EXISTS; a lost race is harmless)."""
    if days is None:
        today = datetime.now(UTC).date()
        days = {today + timedelta(days=n) for n in range(-1, settings.METERING_PARTITIONS_AHEAD_DAYS + 1)}
    missing = sorted(d for d in days if d not in _known)
    created = []
    if not missing:
        return created
    existing = _existing()
    with connection.cursor() as cur:
        for day in missing:
            if day not in existing:
                start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {PARENT} "
                    "FOR VALUES FROM (%s) TO (%s)",
                    [start, start + timedelta(days=1)],
                )
                created.append(partition_name(day))
            # Remembered only once committed: a partition made in a transaction that rolls back
            # is gone, and must be made again.
            transaction.on_commit(lambda day=day: _known.add(day))
    return created


def oldest_accepted(now: datetime) -> datetime:
    """The oldest sample time a batch posted at `now` may hold (`too_old` below it). One hour
    inside the retention, so that a batch is never stored into a partition about to go."""
    return now - timedelta(days=settings.METERING_RETENTION_DAYS) + timedelta(hours=1)


def sample_batches_prune(*, now: datetime | None = None, chunk: int | None = None) -> int:
    """Delete the batch rows that no longer guard against double counting, at most
    METERING_BATCH_PRUNE_CHUNK rows per DELETE (each its own short statement, by the received_at
    index) and METERING_BATCH_PRUNE_MAX_CHUNKS per run; a backlog goes over the next runs.

    Invariant: a pruned batch resent later is refused whole. A batch received at R holds no
    sample after R + METERING_CLOCK_SKEW_SECONDS, so once R < oldest_accepted(now) - skew its
    first sample is older than what any later post may hold (`too_old`, 422): nothing of it is
    stored twice, while its samples may still be in a partition. Returns the rows deleted."""
    now = now or datetime.now(UTC)
    chunk = chunk or settings.METERING_BATCH_PRUNE_CHUNK
    cutoff = oldest_accepted(now) - timedelta(seconds=settings.METERING_CLOCK_SKEW_SECONDS)
    deleted = 0
    with connection.cursor() as cur:
        for _ in range(settings.METERING_BATCH_PRUNE_MAX_CHUNKS):
            cur.execute(
                "DELETE FROM allocations_samplebatch WHERE id IN (SELECT id FROM allocations_samplebatch "
                "WHERE received_at < %s ORDER BY received_at LIMIT %s)",
                [cutoff, chunk],
            )
            deleted += cur.rowcount
            if cur.rowcount < chunk:
                break
    return deleted


def sample_partitions_drop_expired(*, now: datetime | None = None) -> list[str]:
    """Drop every daily partition that lies wholly before the retention period."""
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=settings.METERING_RETENTION_DAYS)).date()
    dropped = []
    with connection.cursor() as cur:
        for day, name in sorted(_existing().items()):
            if day < cutoff:
                cur.execute(f"DROP TABLE IF EXISTS {name}")
                _known.discard(day)
                dropped.append(name)
    return dropped


def forget_known_partitions() -> None:
    """Forget what this process knows (tests; after dropping partitions by hand)."""
    _known.clear()
