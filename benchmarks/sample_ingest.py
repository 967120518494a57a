"""Sample ingest: GPU samples per second through the real HTTP endpoint (gunicorn, parallel
posters with real bearer tokens), beside raw COPY of the same rows into the same partitioned
table, in the same run on the same machine.

Run with `make bench` (a throwaway PostgreSQL). Settings: BENCH_INGEST_NODES (nodes of 8 GPUs,
default 200), BENCH_INGEST_SECONDS (per-second samples in one batch, default 60: a batch is
8 x 60 = 480 GPU samples), BENCH_INGEST_BATCHES (per node, default 3), BENCH_INGEST_POSTERS
(parallel posting processes, default 4), BENCH_INGEST_WORKERS (gunicorn workers, default 3).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from allocations.models import Gpu, Node  # noqa: E402
from allocations.services.sample_ingest import copy_samples, parse_batch  # noqa: E402
from allocations.services.sample_partitions import sample_partitions_ensure  # noqa: E402
from allocations.services.sample_tokens import node_samples_token_rotate  # noqa: E402

NODES = int(os.environ.get("BENCH_INGEST_NODES", 200))
SECONDS = int(os.environ.get("BENCH_INGEST_SECONDS", 60))
BATCHES = int(os.environ.get("BENCH_INGEST_BATCHES", 3))
POSTERS = int(os.environ.get("BENCH_INGEST_POSTERS", 4))
WORKERS = int(os.environ.get("BENCH_INGEST_WORKERS", 3))


def build_nodes() -> list[tuple[str, str, list[str]]]:
    tag = secrets.token_hex(3)
    nodes = Node.objects.bulk_create(
        [Node(hostname=f"bench-{tag}-{n:05d}", address="127.0.0.1", gpu_model="H100-80GB") for n in range(NODES)]
    )
    Gpu.objects.bulk_create(
        [
            Gpu(node=node, index=i, uuid=f"GPU-{tag}-{node.pk:06d}-{i}", model="H100-80GB", memory_mib=81559)
            for node in nodes
            for i in range(8)
        ]
    )
    return [
        (node.hostname, node_samples_token_rotate(node=node), [f"GPU-{tag}-{node.pk:06d}-{i}" for i in range(8)])
        for node in nodes
    ]


def body(uuids: list[str], start: float) -> bytes:
    samples = []
    for s in range(SECONDS):
        gpus = [
            {"uuid": u, "index": i, "utilization": (s * 7 + i) % 101, "memory_utilization": 20,
             "memory_used_mib": 40000, "power_w": 350.5 + i, "temperature_c": 55, "ecc_uncorrected": 0,
             "xid_errors": None,
             "processes": [{"pid": 4000 + i, "user": "gp1001", "memory_mib": 40000}]}
            for i, u in enumerate(uuids)
        ]  # fmt: skip
        samples.append({"time": start + s, "gpus": gpus})
    return json.dumps({"batch_id": secrets.token_hex(16), "samples": samples}).encode()


def poster(args: tuple[int, list[tuple[str, str, bytes]]]) -> tuple[int, int, list[float]]:
    port, jobs = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    stored, failed, latencies = 0, 0, []
    for hostname, token, data in jobs:
        t = time.perf_counter()
        conn.request(
            "POST",
            f"/api/v1/nodes/{hostname}/samples",
            body=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
        latencies.append(time.perf_counter() - t)
        if response.status == 201:
            stored += answer["stored"]
        else:
            failed += 1
    conn.close()
    return stored, failed, latencies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer")


def raw_copy(nodes, start: float) -> tuple[int, float]:
    """The same kind of rows, parsed the same way, COPYed straight into the table."""
    rows_total, elapsed = 0, 0.0
    from datetime import UTC, datetime

    gpu_ids = dict(Gpu.objects.values_list("uuid", "pk"))
    node_ids = dict(Node.objects.values_list("hostname", "pk"))
    prepared = []
    for hostname, _token, uuids in nodes[: max(1, len(nodes) // 2)]:
        batch = parse_batch(json.loads(body(uuids, start)), gpu_ids=gpu_ids, now=datetime.now(UTC))
        prepared.append((node_ids[hostname], batch.lines))
    with connection.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM allocations_samplebatch")
        batch_pk = cur.fetchone()[0] + 10_000_000
    t = time.perf_counter()
    for node_id, rows in prepared:
        copy_samples(rows, node_id=node_id, batch_pk=batch_pk)
        rows_total += len(rows)
    connection.commit() if not connection.get_autocommit() else None
    elapsed = time.perf_counter() - t
    return rows_total, elapsed


def main() -> None:
    from datetime import UTC, datetime

    sample_partitions_ensure()
    sample_partitions_ensure(days={datetime.now(UTC).date()})
    nodes = build_nodes()
    start = time.time() - 3 * 3600
    jobs = [
        (hostname, token, body(uuids, start + b * SECONDS)) for b in range(BATCHES) for hostname, token, uuids in nodes
    ]
    total_rows = len(jobs) * 8 * SECONDS
    port = free_port()
    env = {**os.environ, "DB_CONN_MAX_AGE": "600"}
    server = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
        [str(Path(sys.executable).with_name("gunicorn")), "portal.wsgi:application", "-b", f"127.0.0.1:{port}",
         "-w", str(WORKERS), "--worker-class", "sync", "--log-level", "warning", "--timeout", "120"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        wait_http(port)
        shares = [(port, jobs[i::POSTERS]) for i in range(POSTERS)]
        t = time.perf_counter()
        with multiprocessing.Pool(POSTERS) as pool:
            results = pool.map(poster, shares)
        http_elapsed = time.perf_counter() - t
    finally:
        server.terminate()
        server.wait(timeout=30)
    stored = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    latencies = sorted(lat for r in results for lat in r[2])
    copy_rows, copy_elapsed = raw_copy(nodes, start + BATCHES * SECONDS + 5)
    body_kb = len(jobs[0][2]) / 1024
    print(f"HTTP ingest: {stored:,} of {total_rows:,} GPU samples in {len(jobs)} batches of {8 * SECONDS} "
          f"({body_kb:.0f} KiB), {failed} failed, {POSTERS} posters, gunicorn {WORKERS} workers")  # fmt: skip
    print(f"  {stored / http_elapsed:,.0f} samples/s, {len(jobs) / http_elapsed:,.1f} batches/s, "
          f"batch latency median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
          f"p90 {latencies[int(len(latencies) * 0.9)] * 1000:.0f} ms")  # fmt: skip
    print(f"raw COPY (same rows, already parsed): {copy_rows:,} rows, {copy_rows / copy_elapsed:,.0f} rows/s")


if __name__ == "__main__":
    main()
