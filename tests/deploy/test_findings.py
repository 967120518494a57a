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
