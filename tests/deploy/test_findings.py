"""Findings of the outside review of deploy/: each test reproduces what an operator or an
attacker would meet with the files as shipped (the unit files, the backup scripts)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import django_rq
import pytest
from django.db import connection

from tests.deploy.test_backup_restore import BACKUP, pg_env  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent.parent
WORKER_UNIT = ROOT / "deploy/systemd/gpu-portal-worker@.service"


def unit_setting(unit: Path, key: str, default: str) -> str:
    """The last value a unit file gives `key` (systemd's rule for single-valued settings)."""
    value = default
    for line in unit.read_text().splitlines():
        name, sep, rest = line.partition("=")
        if sep and name.strip() == key:
            value = rest.strip()
    return value


def unit_processes(main_pid: int) -> list[int]:
    """The main process and all its descendants: what a unit's cgroup holds (an RQ work horse
    moves to its own process group, so a process-group signal is not what systemd does)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [main_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def slow_marker_job(folder: str, seconds: float) -> None:
    """A job that takes a while (an SSH provisioning step) and leaves proof that it finished."""
    Path(folder, "started").touch()
    time.sleep(seconds)
    Path(folder, "done").touch()


@pytest.mark.django_db(transaction=True)
def test_a_nightly_dump_is_readable_only_by_its_owner_whatever_the_umask(pg_env, tmp_path):  # noqa: F811
    """The dump holds password hashes, TOTP secrets, personal data and Stripe ids: a backup host
    with the usual umask 022 must not leave it readable by every local account."""
    dump = tmp_path / "portal.dump"
    subprocess.run(
        ["bash", "-c", 'umask 022; exec "$0" "$@"', str(BACKUP / "portal-dump.sh"),
         connection.settings_dict["NAME"], str(dump)],
        env=pg_env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    mode = stat.S_IMODE(dump.stat().st_mode)
    assert mode & 0o077 == 0, f"dump file mode is {mode:o}"


def test_stopping_a_worker_unit_lets_its_running_job_finish(tmp_path):
    """`systemctl stop/restart gpu-portal-worker@N` (every upgrade) sends SIGTERM as the unit's
    KillMode says: to every process of the unit (control-group, systemd's default) or to the
    main process only (mixed). RQ's warm shutdown only works when the job's work horse (a forked
    child, which dies on SIGTERM) is left alone; otherwise the job is cut mid-step."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "default"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        queue = django_rq.get_queue("default", commit_mode="auto")
        queue.enqueue(slow_marker_job, str(tmp_path), 4.0, job_timeout=60)
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        kill_mode = unit_setting(WORKER_UNIT, "KillMode", "control-group")
        kill_signal = getattr(signal, unit_setting(WORKER_UNIT, "KillSignal", "SIGTERM"))
        targets = unit_processes(worker.pid) if kill_mode == "control-group" else [worker.pid]
        assert kill_mode != "control-group" or len(targets) > 1, "no work horse found"
        for pid in targets:
            os.kill(pid, kill_signal)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()
    assert (tmp_path / "done").exists(), (
        "the running job was killed by the stop: " + (tmp_path / "worker.log").read_text()[-2000:]
    )


COUNT_ONE_REQUEST = """
from prometheus_client import Counter, Histogram
Counter("gpu_portal_http_requests_total", "", ["view", "method", "status"]).labels("dashboard", "GET", "200").inc()
Histogram("gpu_portal_http_request_duration_seconds", "", ["view"]).labels("dashboard").observe(0.02)
"""


def test_the_metrics_folder_does_not_grow_with_every_gunicorn_worker_replaced(tmp_path, monkeypatch):
    """gunicorn replaces a worker every `max_requests` requests (and on every reload or timeout):
    each worker leaves its counter and histogram files in PROMETHEUS_MULTIPROC_DIR, and every
    scrape reads them all. Measured here: 1,000 replaced workers make a scrape take 1.7 s, 3,000
    take 8.7 s (Prometheus gives up at 10 s); at 60,000 GPUs a host replaces a worker about every
    100 s. The arbiter's `child_exit` must fold a dead worker's counts in, not leave its files."""
    import importlib.util
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, multiprocess
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "deploy/gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    workers = 25
    for _ in range(workers):
        child = subprocess.run(
            [sys.executable, "-c", COUNT_ONE_REQUEST + "import os; print(os.getpid())"],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}, check=True, capture_output=True, text=True,
        )  # fmt: skip
        conf.child_exit(None, SimpleNamespace(pid=int(child.stdout)))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) <= 2, f"{len(files)} files left by {workers} dead workers: {files[:6]}"
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    totals = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert totals[("gpu_portal_http_requests_total", None)] == workers  # no request lost in the fold
    assert totals[("gpu_portal_http_request_duration_seconds_count", None)] == workers
    assert totals[("gpu_portal_http_request_duration_seconds_bucket", "0.025")] == workers
