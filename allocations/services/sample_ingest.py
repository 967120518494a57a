"""Storing a batch of GPU samples a node posted: validated whole (schema, sizes, times, GPUs of
this node), then written with PostgreSQL COPY in one transaction with its batch row, so a
rejected batch stores nothing and a resent one is stored once."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Greatest

from allocations.models import Gpu, Node
from allocations.services.sample_partitions import oldest_accepted, sample_partitions_ensure

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}\Z")  # \Z: "$" would let a final newline in
USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
MAX_PROCESSES = 256
# The order of copy_samples' text lines: the values first, the node and batch ids last.
COLUMNS = (
    "time", "gpu_id", "utilization", "memory_utilization", "memory_used_mib", "power_w", "temperature_c",
    "ecc_uncorrected", "xid_errors", "processes", "node_id", "batch_id",
)  # fmt: skip
MAX_INT = 2**31 - 1
# Linux pids end at 2**22; anything above PostgreSQL's integer would also make the misuse scan's
# cast fail for every node's batches of its window.
MAX_PID = MAX_INT


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BatchRejected("bad_value", f"{what} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise BatchRejected("bad_value", f"{what} must be a number")
    # Compared before any float(): JSON allows integers of hundreds of digits, which float()
    # cannot hold (OverflowError, a 500 that the agent would resend forever).
    if not low <= value <= high:
        raise BatchRejected("bad_value", f"{what} must be between {low} and {high}")
    if integer and not float(value).is_integer():
        raise BatchRejected("bad_value", f"{what} must be a whole number")
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
        if not (type(pid) is int and 1 <= pid <= MAX_PID):
            pid = _number(pid, "pid", 1, MAX_PID, integer=True)
        if not (memory is None or (type(memory) is int and 0 <= memory <= 2**31)):
            memory = _number(memory, "process memory", 0, 2**31, integer=True)
        clean.append({"pid": pid, "user": user, "memory_mib": memory})
    # COPY's text format: JSON written by us; only backslashes need doubling (never tabs or newlines).
    return json.dumps(clean).replace("\\", "\\\\")


def _processes_fast(value: list, seen: dict) -> str | None:
    """The common process list (a few well-formed processes) as COPY text without json.dumps:
    user names match USER_RE, so they need no JSON or COPY escaping. None: check it fully."""
    key = []
    for proc in value:
        if type(proc) is not dict or len(proc) > 3:
            return None
        pid, user, memory = proc.get("pid"), proc.get("user"), proc.get("memory_mib")
        if not (type(pid) is int and 1 <= pid <= MAX_PID):
            return None
        if not ((user is None or type(user) is str) and (memory is None or type(memory) is int)):
            return None  # (also keeps the key hashable)
        key.append((pid, user, memory))
    key = tuple(key)
    text = seen.get(key)
    if text is None:
        parts = []
        for pid, user, memory in key:
            if not (user is None or (type(user) is str and USER_RE.match(user))):
                return None
            if not (memory is None or (type(memory) is int and 0 <= memory <= 2**31)):
                return None
            shown_user = "null" if user is None else f'"{user}"'
            parts.append(
                f'{{"pid": {pid}, "user": {shown_user}, "memory_mib": {"null" if memory is None else memory}}}'
            )
        text = seen[key] = f"[{', '.join(parts)}]"
    return text


@dataclass(frozen=True)
class ParsedBatch:
    """A batch checked whole. `lines` are the GPU samples in COPY's text format, each ending
    where the node and batch ids follow (see copy_samples)."""

    batch_id: str
    dropped: int
    lines: list[str]
    first: datetime
    last: datetime
    days: frozenset


def _gpu_text(gpu: dict, processes_seen: dict) -> str:
    """One GPU sample's values (utilisation … processes) in COPY's text format, tab-separated;
    BatchRejected for anything out of range. The common case (every value a number in range,
    a few well-formed processes) takes no call per field."""
    get = gpu.get
    u, mu, mem, pw, temp = (
        get("utilization"),
        get("memory_utilization"),
        get("memory_used_mib"),
        get("power_w"),
        get("temperature_c"),
    )
    ecc, xid, procs = get("ecc_uncorrected"), get("xid_errors"), get("processes")
    if (
        type(u) is int
        and 0 <= u <= 100
        and type(mu) is int
        and 0 <= mu <= 100
        and type(mem) is int
        and 0 <= mem <= MAX_INT
        and (type(pw) is float or type(pw) is int)
        and 0 <= pw <= 10000
        and type(temp) is int
        and -60 <= temp <= 200
        and (ecc is None or (type(ecc) is int and 0 <= ecc <= MAX_INT))
        and (xid is None or (type(xid) is int and 0 <= xid <= MAX_INT))
    ):
        text = None
        if not procs:
            text = "[]"
        elif type(procs) is list and len(procs) <= MAX_PROCESSES:
            text = _processes_fast(procs, processes_seen)
        if text is None:
            text = _processes(procs)
        ecc = "\\N" if ecc is None else ecc
        xid = "\\N" if xid is None else xid
        return f"{u}\t{mu}\t{mem}\t{pw}\t{temp}\t{ecc}\t{xid}\t{text}"
    values = []
    for field, low, high, integer in FIELDS:
        value = _number(get(field), field, low, high, integer=integer)
        values.append("\\N" if value is None else str(value))
    values.append(_processes(procs) if procs else "[]")
    return "\t".join(values)


def parse_batch(payload, *, gpu_ids: dict[str, int], now: datetime) -> ParsedBatch:
    """The posted batch checked whole (nothing is written before every sample passed), or
    BatchRejected."""
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
    earliest = oldest_accepted(now).timestamp()
    limit = settings.METERING_MAX_SAMPLES_PER_BATCH
    lines: list[str] = []
    seen: set[tuple[int, datetime]] = set()
    times: set[datetime] = set()
    processes_seen: dict = {}
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
        times.add(when)
        stamp = when.isoformat()
        for gpu in sample["gpus"]:
            if len(lines) >= limit:
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
            lines.append(f"{stamp}\t{gpu_id}\t{_gpu_text(gpu, processes_seen)}\t")
    if not lines:
        raise BatchRejected("bad_schema", "samples must hold at least one GPU sample")
    return ParsedBatch(batch_id, dropped, lines, min(times), max(times), frozenset(t.date() for t in times))


def copy_samples(lines: list[str], *, node_id: int, batch_pk: int) -> None:
    """COPY the parsed GPU samples into the partitioned table (psycopg 3's cursor.copy), in one
    write: each line gets the node and batch ids by a single join."""
    end = f"{node_id}\t{batch_pk}\n"
    data = end.join(lines) + end
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
    batch = parse_batch(payload, gpu_ids=gpu_ids, now=now)
    with transaction.atomic():
        sample_partitions_ensure(days=set(batch.days))
        # ON CONFLICT: a resend racing the original waits for it and then finds it stored.
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO allocations_samplebatch (node_id, batch_id, received_at, sample_count, first_time, "
                "last_time, dropped_before) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (node_id, batch_id) DO NOTHING RETURNING id",
                [node.pk, batch.batch_id, now, len(batch.lines), batch.first, batch.last, batch.dropped],
            )
            inserted = cur.fetchone()
        if inserted is None:
            return IngestResult(stored=0, duplicate=True)
        copy_samples(batch.lines, node_id=node.pk, batch_pk=inserted[0])
        last = batch.last
        Node.objects.filter(pk=node.pk).filter(Q(last_sample_at__isnull=True) | Q(last_sample_at__lt=last)).update(
            last_sample_at=Greatest("last_sample_at", last)
        )
    return IngestResult(stored=len(batch.lines), duplicate=False)
