"""Placement at national scale: 1,250 nodes of 8 H100 = 10,000 GPUs, most of them busy.

Run with `make bench` (a throwaway PostgreSQL, like `make test`). Prints the time and the
number of queries of one placement, and of the remaining-budget read behind /calls/.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from allocations.models import Assignment, Gpu, Grant, Node  # noqa: E402
from allocations.services.placement import grant_place  # noqa: E402
from portal.models import Application, Call, CallBudget, Organisation, User  # noqa: E402
from portal.services.applications import call_remaining_gpu_hours  # noqa: E402

NODES = int(os.environ.get("BENCH_NODES", 1250))
BUSY_SHARE = float(os.environ.get("BENCH_BUSY", 0.8))


def build() -> tuple[Call, Organisation, User]:
    today = timezone.localdate()
    user = User.objects.create_user(email="bench-placement@example.ac.kr")
    org = Organisation.objects.create(kind="university", name_ko="벤치", name_en="Bench")
    call = Call.objects.create(
        title_ko="벤치", title_en="Bench", opens_at=timezone.now() - timedelta(days=1),
        closes_at=timezone.now() + timedelta(days=30), eligible_kinds=["university"], cap_gpu_hours=10**6,
        allocation_starts_on=today, allocation_ends_on=today + timedelta(days=400),
    )  # fmt: skip
    CallBudget.objects.create(call=call, gpu_model="H100-80GB", gpu_hours=10**9)
    nodes = Node.objects.bulk_create(
        Node(hostname=f"place-{i:05d}", address=f"10.{i // 250}.{i % 250}.1", gpu_model="H100-80GB",
             host_key="ssh-ed25519 AAAAbench", status=Node.Status.ONLINE)
        for i in range(NODES)
    )  # fmt: skip
    Gpu.objects.bulk_create(
        Gpu(node=n, index=j, uuid=f"GPU-{n.pk:08d}-{j:04d}", model="H100-80GB", memory_mib=81559)
        for n in nodes
        for j in range(8)
    )
    # Busy GPUs: 4-GPU grants on the first BUSY_SHARE of the nodes; three quarters of those
    # nodes are full (two grants), the rest half used (one grant).
    busy_nodes = nodes[: int(NODES * BUSY_SHARE)]
    halves = [2 if i < len(busy_nodes) * 3 // 4 else 1 for i in range(len(busy_nodes))]
    apps = Application.objects.bulk_create(
        Application(call=call, organisation=org, principal_investigator=user, title=f"busy {k}", status="approved")
        for k in range(sum(halves))
    )
    grants = Grant.objects.bulk_create(
        Grant(organisation=org, application=a, gpu_model="H100-80GB", gpu_count=4, gpu_hours=1000, copay_percent=0,
              starts_on=today, ends_on=today + timedelta(days=90), status="active")
        for a in apps
    )  # fmt: skip
    tz = timezone.get_default_timezone()
    period = DateTimeTZRange(
        datetime.combine(today, dtime.min, tzinfo=tz),
        datetime.combine(today + timedelta(days=91), dtime.min, tzinfo=tz),
    )
    gpus_by_node = {}
    for gpu in Gpu.objects.filter(node__in=busy_nodes).order_by("node_id", "index"):
        gpus_by_node.setdefault(gpu.node_id, []).append(gpu)
    rows, next_grant = [], iter(grants)
    for i, node in enumerate(busy_nodes):
        for half in range(halves[i]):
            grant = next(next_grant)
            for gpu in gpus_by_node[node.pk][half * 4 : half * 4 + 4]:
                rows.append(Assignment(grant=grant, node=node, gpu=gpu, period=period))
    Assignment.objects.bulk_create(rows, batch_size=5000)
    return call, org, user


def measure(label: str, fn, repeat: int = 15) -> None:
    times, queries = [], 0
    for _ in range(repeat):
        with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
            queries = len(ctx.captured_queries)
            transaction.set_rollback(True)
    print(f"{label}: median {statistics.median(times) * 1000:.1f} ms, p90 "
          f"{sorted(times)[int(len(times) * 0.9) - 1] * 1000:.1f} ms, {queries} queries")  # fmt: skip


def main() -> None:
    # Everything is rolled back at the end: the database keeps the generated national-scale data.
    with transaction.atomic():
        run()
        transaction.set_rollback(True)


def run() -> None:
    t0 = time.perf_counter()
    with transaction.atomic():
        call, org, user = build()
    print(f"built {NODES} nodes, {NODES * 8} GPUs, {Assignment.objects.count()} busy assignments "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    today = date.today()

    def place(count: int):
        def run():
            app = Application.objects.create(call=call, organisation=org, principal_investigator=user, title="new")
            grant = Grant.objects.create(
                organisation=org, application=app, gpu_model="H100-80GB", gpu_count=count, gpu_hours=100,
                copay_percent=0, starts_on=today, ends_on=today + timedelta(days=30),
            )  # fmt: skip
            assert len(grant_place(grant=grant)) == count

        return run

    measure("place a 4-GPU grant (fills a half-used node)", place(4))
    measure("place an 8-GPU grant (needs a whole node)", place(8))
    measure("remaining call budget (/calls/)", lambda: call_remaining_gpu_hours(call))


if __name__ == "__main__":
    main()
