"""The portal's pages at national scale, measured from outside (issue 13).

Run by `make bench` (scripts/devstack.py starts a throwaway PostgreSQL and Redis, migrates and
fills the database with benchmarks/generate.py first). Serves the portal with gunicorn (DEBUG
off, 2 sync workers, persistent database connections) and measures, in the same run:

- every page of benchmarks/pages.py with one client: median and p95 of `BENCH_REQUESTS`
  sequential requests (at most `BENCH_PAGE_SECONDS` per page), and its queries (counted in
  this process with Django's test client against the same database);
- the bare reference page (one indexed 20-row query) the same way, and the ratio to it;
- throughput of /dashboard/ and of the reference page under 20 concurrent clients (wrk when
  installed, else a small threaded Python client, which takes some of the CPU itself), and of
  the signed-in floor page and of the reference page asked for with a session cookie (what
  every signed-in page costs before its content);
- the admin review queue again with 2,000 applications awaiting review.

Writes `docs/benchmarks.md` (between the markers) and `docs/benchmarks.json`. Timings are
never asserted anywhere: they depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from benchmarks.pages import FLOOR_NAME, REFERENCE, SIGNED_IN_REFERENCE, Page, pages, pending_to, session_for  # noqa: E402
from portal.models import Application, User  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", 40))
PAGE_SECONDS = float(os.environ.get("BENCH_PAGE_SECONDS", 8))
LOAD_SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", 10))
LOAD_ROUNDS = int(os.environ.get("BENCH_LOAD_ROUNDS", 3))
CLIENTS = 20
WORKERS = 2
DOC = ROOT / "docs" / "benchmarks.md"
JSON_OUT = Path(os.environ.get("BENCH_JSON", ROOT / "docs" / "benchmarks.json"))
SCALE = os.environ.get("BENCH_SCALE", "1")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# The targets: page name → (p95 in ms, or None) and a note.
TARGETS = {
    "/dashboard/": (30, "p95 < 30 ms, flat in the size of the database"),
    "/applications/ (largest organisation's owner)": (50, "p95 < 50 ms, paginated"),
    "admin review queue": (50, "p95 < 50 ms (331 pending)"),
    "admin review queue, 2,000 pending": (70, "p95 < 70 ms"),
    "admin application list, unfiltered": (100, "p95 < 100 ms"),
    "admin application change page": (50, "p95 < 50 ms"),
    "/grants/<id>/ (most tasks)": (None, "constant queries (tests/test_query_counts.py)"),
    "/calls/": (None, "constant queries (tests/test_query_counts.py)"),
}


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    def __init__(self) -> None:
        self.port = free_port()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings", "DJANGO_DEBUG": "0"}
        env.setdefault("PORTAL_ENV", "development")  # plain HTTP on loopback; DEBUG stays off
        self.proc = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
            [str(Path(sys.executable).parent / "gunicorn"), "portal.wsgi:application", "--bind",
             f"127.0.0.1:{self.port}", "--workers", str(WORKERS), "--worker-class", "sync", "--log-level", "warning",
             "--chdir", str(ROOT)],
            env=env, cwd=ROOT,
        )  # fmt: skip
        for _ in range(100):
            try:
                get(self.port, REFERENCE, None)
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("gunicorn did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def get(port: int, path: str, cookie: str | None) -> tuple[int, float]:
    """One request on a new connection (gunicorn's sync workers close it after each answer)."""
    headers = {"Host": "127.0.0.1"}
    if cookie:
        headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={cookie}"
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return response.status, time.perf_counter() - start


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def count_queries(page: Page, cookie: str | None) -> int:
    client = Client()
    if cookie:
        client.cookies[settings.SESSION_COOKIE_NAME] = cookie
    client.get(page.path)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(page.path)
    if response.status_code != 200:
        raise SystemExit(f"{page.path} answered {response.status_code} in the test client")
    return len(ctx.captured_queries)


class CpuMeter:
    """CPU seconds used by the gunicorn workers and by PostgreSQL's processes. Unlike wall-clock
    latency it hardly changes when other work shares the machine, so it compares runs."""

    def __init__(self, server: Gunicorn) -> None:
        import psutil

        self.app = psutil.Process(server.proc.pid)
        pidfile = Path(connection.settings_dict.get("HOST") or "/nonexistent") / "postmaster.pid"
        self.db = psutil.Process(int(pidfile.read_text().split()[0])) if pidfile.exists() else None

    @staticmethod
    def _tree(proc) -> dict[int, float]:
        times = {}
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except Exception:  # noqa: BLE001, S112 - a backend that just ended
                continue
            times[p.pid] = t.user + t.system
        return times

    def read(self) -> tuple[dict[int, float], dict[int, float]]:
        return self._tree(self.app), self._tree(self.db) if self.db else {}

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds of the processes alive at both readings (the workers and their database
        connections are; an autovacuum worker that came or went is not counted)."""
        return sum(after[pid] - before[pid] for pid in after.keys() & before.keys())


METER: CpuMeter | None = None


def measure_page(port: int, page: Page, name: str | None = None) -> dict:
    cookie = session_for(User.objects.get(pk=page.user_id), staff=page.staff) if page.user_id else None
    for _ in range(3):  # warm the workers (templates, connections)
        status, _t = get(port, page.path, cookie)
        if status != 200:
            raise SystemExit(f"{page.path} answered {status}")
    times: list[float] = []
    deadline = time.perf_counter() + PAGE_SECONDS
    app0, db0 = METER.read() if METER else ({}, {})
    while len(times) < REQUESTS and (len(times) < 5 or time.perf_counter() < deadline):
        times.append(get(port, page.path, cookie)[1] * 1000)
    app1, db1 = METER.read() if METER else ({}, {})
    result = {
        "page": name or page.name,
        "path": page.path,
        "requests": len(times),
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 95), 1),
        "app_cpu_ms": round(CpuMeter.spent(app0, app1) * 1000 / len(times), 1),
        "db_cpu_ms": round(CpuMeter.spent(db0, db1) * 1000 / len(times), 1),
        "queries": count_queries(page, cookie),
    }
    say(f"{result['page']:55} median {result['median_ms']:7.1f} ms  p95 {result['p95_ms']:7.1f} ms  "
        f"cpu {result['app_cpu_ms']:6.1f} + {result['db_cpu_ms']:5.1f} ms  {result['queries']:3d} queries")  # fmt: skip
    return result


def throughput(port: int, page: Page) -> dict:
    cookie = session_for(User.objects.get(pk=page.user_id), staff=page.staff) if page.user_id else None
    url = f"http://127.0.0.1:{port}{page.path}"
    wrk = shutil.which("wrk")
    if wrk:
        cmd = [wrk, "-t2", f"-c{CLIENTS}", f"-d{LOAD_SECONDS}s", url]
        if cookie:
            cmd[1:1] = ["-H", f"Cookie: {settings.SESSION_COOKIE_NAME}={cookie}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout  # noqa: S603
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        tool = "wrk"
    else:
        rps, errors, tool = python_load(port, page.path, cookie), None, "python threads"
    if errors:
        raise SystemExit(f"{page.path}: {errors.group(1)} failed requests under load")
    say(f"{page.name:55} {rps:7.1f} req/s under {CLIENTS} clients ({tool})")
    return {"page": page.name, "path": page.path, "clients": CLIENTS, "seconds": LOAD_SECONDS,
            "requests_per_second": round(rps, 1), "tool": tool}  # fmt: skip


def throughput_rounds(port: int, measured: list[Page]) -> dict[str, list[dict]]:
    """Each page under load in turn, `LOAD_ROUNDS` times over: on a shared machine a page
    measured once can land in a quiet or a busy moment; the median of alternating rounds
    compares the pages under the same conditions."""
    runs: dict[str, list[dict]] = {p.name: [] for p in measured}
    for _ in range(LOAD_ROUNDS):
        for page in measured:
            runs[page.name].append(throughput(port, page))
    return runs


def throughput_summary(runs: dict[str, list[dict]]) -> dict:
    """Per page the median requests per second of its rounds, and each one's share of the
    reference's median."""

    def summary(name: str) -> dict:
        rounds = runs[name]
        values = [r["requests_per_second"] for r in rounds]
        return {**rounds[0], "requests_per_second": round(statistics.median(values), 1), "rounds": values}

    ref = summary(next(iter(runs)))
    dashboard, floor, signed_in = (summary(name) for name in ("/dashboard/", FLOOR_NAME, SIGNED_IN_REFERENCE))

    def share(page: dict) -> float:
        return round(page["requests_per_second"] / ref["requests_per_second"], 2)

    return {
        "reference": ref,
        "dashboard": dashboard,
        "dashboard_share_of_reference": share(dashboard),
        "signed_in_floor": floor,
        "floor_share_of_reference": share(floor),
        "reference_signed_in": signed_in,
        "reference_signed_in_share": share(signed_in),
    }


def python_load(port: int, path: str, cookie: str | None) -> float:
    done, stop = [0] * CLIENTS, time.perf_counter() + LOAD_SECONDS

    def client(i: int) -> None:
        while time.perf_counter() < stop:
            if get(port, path, cookie)[0] == 200:
                done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / LOAD_SECONDS


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    import gunicorn

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / 1024 / 1024, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "postgresql": pg,
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "gunicorn_workers": WORKERS,
    }


def data_size() -> dict:
    from allocations.models import Gpu, Grant, Node, ProvisioningTask
    from portal.models import EligibilityResult, Membership, Organisation, Review

    largest = max(
        (m["n"] for m in Membership.objects.values("organisation").annotate(n=django.db.models.Count("pk"))), default=0
    )
    return {
        "organisations": Organisation.objects.count(),
        "largest_organisation_members": largest,
        "users": User.objects.count(),
        "applications": Application.objects.count(),
        "awaiting_review": Application.objects.filter(status__in=["submitted", "in_review"]).count(),
        "eligibility_results": EligibilityResult.objects.count(),
        "reviews": Review.objects.count(),
        "grants": Grant.objects.count(),
        "nodes": Node.objects.count(),
        "gpus": Gpu.objects.count(),
        "provisioning_tasks": ProvisioningTask.objects.count(),
    }


def run() -> dict:
    facts, size = machine(), data_size()
    say(f"data: {size}")
    global METER
    server = Gunicorn()
    METER = CpuMeter(server)
    try:
        all_pages = pages()
        reference = all_pages[0]
        results = [measure_page(server.port, p) for p in all_pages]
        load = throughput_rounds(
            server.port,
            [
                reference,
                next(p for p in all_pages if p.name == "/dashboard/"),
                next(p for p in all_pages if p.name == FLOOR_NAME),
                # What reading the session and the user (every signed-in request does) costs.
                next(p for p in all_pages if p.name == SIGNED_IN_REFERENCE),
            ],
        )
        target = round(2000 * min(1.0, float(SCALE)))  # the 2,000 at scale 1
        changed = pending_to(target)
        say(f"{changed} drafts submitted: {Application.objects.filter(status__in=['submitted', 'in_review']).count()}"
            " applications await review")  # fmt: skip
        queue = next(p for p in all_pages if p.name == "admin review queue")
        results.append(measure_page(server.port, queue, f"admin review queue, {target:,} pending"))
    finally:
        server.stop()
    ref = results[0]
    for r in results:
        r["ratio_to_reference"] = round(r["median_ms"] / ref["median_ms"], 1)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "make bench" + (f" BENCH_SCALE={os.environ['BENCH_SCALE']}" if "BENCH_SCALE" in os.environ else ""),
        "scale": float(os.environ.get("BENCH_SCALE", 1)),
        "machine": facts,
        "data": size,
        "pages": results,
        "throughput": throughput_summary(load),
    }


def verdict(result: dict) -> str:
    target = TARGETS.get(result["page"])
    if not target:
        return ""
    limit, text = target
    if limit is None:
        return text
    return f"{text}: {'met' if result['p95_ms'] < limit else '**missed**'}"


def cpu(result: dict) -> str:
    """Server CPU per request, app + database (runs before the CPU meter have none)."""
    if "app_cpu_ms" not in result:
        return "–"
    return f"{result['app_cpu_ms']} + {result['db_cpu_ms']}"


def throughput_text(t: dict) -> str:
    def rps(page: dict) -> str:
        rounds = page.get("rounds")
        return f"{page['requests_per_second']:,} req/s" + (
            f" (rounds: {', '.join(map(str, rounds))})" if rounds else ""
        )

    if isinstance(t["reference"], list):  # a JSON written before the rounds: two reference runs
        t = {**t, "reference": t["reference"][0]}
    d = t["dashboard"]
    text = (
        f"Throughput under {d['clients']} clients, {d['seconds']} s a round ({d['tool']}), median of the rounds, "
        f"each page in turn: `/dashboard/` {rps(d)}, the reference page {rps(t['reference'])}: the dashboard serves "
        f"**{t['dashboard_share_of_reference']:.0%}** of the reference (target ≥ 50 %)."
    )
    if "signed_in_floor" in t:
        text += (
            f" A signed-in page with the base layout and an empty body (`{t['signed_in_floor']['path']}`: session, "
            f"user, middleware, navigation) serves {rps(t['signed_in_floor'])}, "
            f"**{t['floor_share_of_reference']:.0%}** of the reference."
        )
    if "reference_signed_in" in t:
        text += (
            f" The reference page itself, asked for with the dashboard user's session cookie (the session and the "
            f"user are read, as on every signed-in request), serves {rps(t['reference_signed_in'])}, "
            f"**{t['reference_signed_in_share']:.0%}** of the reference."
        )
    return text


def markdown(report: dict, before: dict | None) -> str:
    prior = {r["page"]: r for r in (before or {}).get("pages", [])}
    m, d, t = report["machine"], report["data"], report["throughput"]
    lines = [
        BEGIN,
        f"### Pages at scale {report['scale']:g} (`benchmarks/web.py`), {report['when']}",
        "",
        f"Command: `{report['command']}` (scale {report['scale']}). Machine: {m['cpus']} CPUs ({m['cpu']}), "
        f"{m['memory_gib']} GiB, load average {m['load_average_at_start']} at the start (the machine is shared), "
        f"PostgreSQL {m['postgresql']}, Python {m['python']}, Django {m['django']}, gunicorn {m['gunicorn']} with "
        f"{m['gunicorn_workers']} sync workers, DEBUG off, persistent connections, PostgreSQL JIT off.",
        "",
        "Data: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in d.items()) + ".",
        "",
        throughput_text(t),
        "",
        "One client, sequential requests: median and p95 latency (ms), server CPU per request (ms: gunicorn "
        "worker + PostgreSQL; far less sensitive to other load on the machine than latency), queries per request, "
        "ratio = median / reference median. The targets are the issue's, set for scale 1.",
        "",
        "| page | median | p95 | CPU app + db | queries | ratio | "
        + ("before: median / p95 / CPU / queries | " if before else "")
        + "target |",
        "|---|---|---|---|---|---|" + ("---|" if before else "") + "---|",
    ]
    for r in report["pages"]:
        b = prior.get(r["page"])
        was = f"{b['median_ms']} / {b['p95_ms']} / {cpu(b)} / {b['queries']} | " if b else ("– | " if before else "")
        lines.append(f"| {r['page']} | {r['median_ms']} | {r['p95_ms']} | {cpu(r)} | {r['queries']} | "
                     f"{r['ratio_to_reference']}× | {was}{verdict(r)} |")  # fmt: skip
    if before:
        bt = before["throughput"]
        lines += [
            "",
            f"Before (the same data and script on the code before this change, {before['when']}, load average "
            f"{before['machine']['load_average_at_start']}): `/dashboard/` {bt['dashboard']['requests_per_second']} "
            f"req/s under load, {bt['dashboard_share_of_reference']:.0%} of the reference.",
        ]
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--render":  # the document again from a saved JSON
        report = json.loads(Path(sys.argv[2]).read_text())
    else:
        report = run()
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        say(f"wrote {JSON_OUT}")
    if os.environ.get("BENCH_NO_DOC"):
        return 0
    before_path = os.environ.get("BENCH_BEFORE")
    before = json.loads(Path(before_path).read_text()) if before_path else None
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = markdown(report, before)
    begin, end = (f"<!-- bench:scale-{report['scale']:g}:{k} -->" for k in ("begin", "end"))
    block = block.replace(BEGIN, begin).replace(END, end)
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)
    say(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
