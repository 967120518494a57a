"""Storing a batch of GPU samples a node posted: validated whole (schema, sizes, times, GPUs of
this node), then written with PostgreSQL COPY in one transaction with its batch row, so a
rejected batch stores nothing and a resent one is stored once."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Greatest

from allocations.models import Gpu, Node
from allocations.services.sample_partitions import sample_partitions_ensure

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_PROCESSES = 256
COLUMNS = (
    "time", "node_id", "gpu_id", "batch_id", "utilization", "memory_utilization", "memory_used_mib",
    "power_w", "temperature_c", "ecc_uncorrected", "xid_errors", "processes",
)  # fmt: skip


# (field, lowest, highest, whole number): the columns after time and gpu, in COPY order.
FIELDS = (
    ("utilization", 0, 100, True),
    ("memory_utilization", 0, 100, True),
    ("memory_used_mib", 0, 2**31 - 1, True),
    ("power_w", 0, 10000, False),
    ("temperature_c", -60, 200, True),
    ("ecc_uncorrected", 0, 2**31 - 1, True),
    ("xid_errors", 0, 2**31 - 1, True),
)


class BatchRejected(Exception):
    """The batch is refused as a whole; `http_status` is the HTTP status, `code` and `message` the reason."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = status


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicate: bool


def _number(value, what: str, low: float, high: float, *, integer: bool = False):
    """A number within [low, high], or None; anything else rejects the batch."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BatchRejected("bad_value", f"{what} must be a number")
    if integer and not float(value).is_integer():
        raise BatchRejected("bad_value", f"{what} must be a whole number")
    if not low <= value <= high:
        raise BatchRejected("bad_value", f"{what} must be between {low} and {high}")
    return int(value) if integer else float(value)


def _processes(value) -> str:
    if value is None:
        return "[]"
    if not isinstance(value, list) or len(value) > MAX_PROCESSES:
        raise BatchRejected("bad_value", f"processes must be a list of at most {MAX_PROCESSES}")
    clean = []
    for proc in value:
        if not isinstance(proc, dict):
            raise BatchRejected("bad_value", "a process must be an object")
        user = proc.get("user")
        if user is not None and (type(user) is not str or not USER_RE.match(user)):
            raise BatchRejected("bad_value", "a process's user must be a unix user name")
        pid, memory = proc.get("pid"), proc.get("memory_mib")
        if not (type(pid) is int and 1 <= pid <= 2**31):
            pid = _number(pid, "pid", 1, 2**31, integer=True)
        if not (memory is None or (type(memory) is int and 0 <= memory <= 2**31)):
            memory = _number(memory, "process memory", 0, 2**31, integer=True)
        clean.append({"pid": pid, "user": user, "memory_mib": memory})
    return json.dumps(clean)


def parse_batch(payload, *, gpu_ids: dict[str, int], now: datetime) -> tuple[str, int, list[tuple]]:
    """(batch id, dropped count, rows for COPY without node and batch ids) from a posted batch,
    or BatchRejected. Every sample is checked before anything is written."""
    if not isinstance(payload, dict):
        raise BatchRejected("bad_schema", "the body must be a JSON object")
    batch_id = payload.get("batch_id")
    if not isinstance(batch_id, str) or not BATCH_ID_RE.match(batch_id):
        raise BatchRejected("bad_schema", "batch_id must be 8-64 letters, digits, - or _")
    dropped = _number(payload.get("dropped_before", 0), "dropped_before", 0, 10**9, integer=True) or 0
    samples = payload.get("samples")
    if not isinstance(samples, list) or not samples:
        raise BatchRejected("bad_schema", "samples must be a non-empty list")
    latest = now.timestamp() + settings.METERING_CLOCK_SKEW_SECONDS
    earliest = (now - timedelta(days=settings.METERING_RETENTION_DAYS) + timedelta(hours=1)).timestamp()
    limit = settings.METERING_MAX_SAMPLES_PER_BATCH
    rows: list[tuple] = []
    seen: set[tuple[int, datetime]] = set()
    for sample in samples:
        if not isinstance(sample, dict) or not isinstance(sample.get("gpus"), list):
            raise BatchRejected("bad_schema", "each sample needs a time and a list of gpus")
        at = _number(sample.get("time"), "time", 0, 10**11)
        if at is None:
            raise BatchRejected("bad_schema", "each sample needs a time")
        if at > latest:
            raise BatchRejected("future_time", "a sample is in the future: check the node's clock", 422)
        if at < earliest:
            raise BatchRejected("too_old", "a sample is older than the portal keeps samples", 422)
        when = datetime.fromtimestamp(at, UTC)
        for gpu in sample["gpus"]:
            if len(rows) >= limit:
                raise BatchRejected("too_many", f"a batch holds at most {limit} GPU samples", 413)
            if not isinstance(gpu, dict) or not isinstance(gpu.get("uuid"), str):
                raise BatchRejected("bad_schema", "each GPU sample needs its uuid")
            gpu_id = gpu_ids.get(gpu["uuid"])
            if gpu_id is None:
                raise BatchRejected("unknown_gpu", f"this node has no GPU {gpu['uuid'][:80]}", 422)
            # Keyed as stored (microseconds): two times that differ less would collide in the table.
            if (gpu_id, when) in seen:
                raise BatchRejected("duplicate_sample", "a GPU appears twice at the same time")
            seen.add((gpu_id, when))
            values = [when, gpu_id]
            for field, low, high, integer in FIELDS:
                value = gpu.get(field)
                # The common case (a number in range; NaN fails the comparison) without a call;
                # anything else is checked fully.
                kind = type(value)
                if value is None or ((kind is int or (kind is float and not integer)) and low <= value <= high):
                    values.append(value)
                else:
                    values.append(_number(value, field, low, high, integer=integer))
            values.append(_processes(gpu.get("processes")) if gpu.get("processes") else "[]")
            rows.append(tuple(values))
    return batch_id, dropped, rows


def _copy_text(rows: list[tuple], node_id: int, batch_pk: int) -> str:
    """The rows in COPY's text format, built in one pass (several times faster than one
    write_row call per row). Only `processes` is free text: JSON we wrote ourselves, whose
    backslashes are doubled for COPY; tabs and newlines never occur in it."""
    head = f"\t{node_id}\t"
    tail = f"\t{batch_pk}\t"
    stamps: dict[datetime, str] = {}
    lines = []
    for when, gpu_id, *values, processes in rows:
        stamp = stamps.get(when)
        if stamp is None:
            stamp = stamps[when] = when.isoformat()
        fields = "\t".join("\\N" if v is None else str(v) for v in values)
        lines.append(f"{stamp}{head}{gpu_id}{tail}{fields}\t{processes.replace(chr(92), chr(92) * 2)}\n")
    return "".join(lines)


def copy_samples(rows: list[tuple], *, node_id: int, batch_pk: int) -> None:
    """COPY the rows into the partitioned table (psycopg 3's cursor.copy)."""
    data = _copy_text(rows, node_id, batch_pk)
    with (
        connection.cursor() as cur,
        cur.cursor.copy(f"COPY allocations_gpusample ({', '.join(COLUMNS)}) FROM STDIN") as copy,
    ):
        copy.write(data)


def samples_ingest(*, node: Node, payload, now: datetime | None = None) -> IngestResult:
    """Validate and store one batch. A batch already stored (same node, same batch id) stores
    nothing and is answered as a success, so a node that lost our answer may resend safely."""
    now = now or datetime.now(UTC)
    gpu_ids = dict(Gpu.objects.filter(node_id=node.pk).values_list("uuid", "pk"))
    batch_id, dropped, rows = parse_batch(payload, gpu_ids=gpu_ids, now=now)
    times = [r[0] for r in rows]
    with transaction.atomic():
        sample_partitions_ensure(days={t.date() for t in times})
        # ON CONFLICT: a resend racing the original waits for it and then finds it stored.
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO allocations_samplebatch (node_id, batch_id, received_at, sample_count, first_time, "
                "last_time, dropped_before) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (node_id, batch_id) DO NOTHING RETURNING id",
                [node.pk, batch_id, now, len(rows), min(times), max(times), dropped],
            )
            inserted = cur.fetchone()
        if inserted is None:
            return IngestResult(stored=0, duplicate=True)
        copy_samples(rows, node_id=node.pk, batch_pk=inserted[0])
        last = max(times)
        Node.objects.filter(pk=node.pk).filter(Q(last_sample_at__isnull=True) | Q(last_sample_at__lt=last)).update(
            last_sample_at=Greatest("last_sample_at", last)
        )
    return IngestResult(stored=len(rows), duplicate=False)
