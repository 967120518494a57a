"""A second `make run` in the same checkout is refused before it starts anything: the first
run's PostgreSQL, Redis socket, demo sshd and demo users' processes stay as they are."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEVSTACK = [sys.executable, str(ROOT / "scripts/devstack.py")]

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {scripts!r})
    import devstack
    with devstack.run_lock(Path({datadir!r})):
        print("holding", flush=True)
        time.sleep(60)
    """
)


@pytest.fixture
def first_run(tmp_path):
    """A process holding the data folder's run lock, as a running `make run` does."""
    datadir = tmp_path / "devdata"
    code = HOLDER.format(scripts=str(ROOT / "scripts"), datadir=str(datadir))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    assert line.strip() == "holding", line + holder.stderr.read()
    yield datadir, holder
    holder.kill()
    holder.wait()


def devstack(mode: str, datadir: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DEVDATA": str(datadir), "HOME": str(datadir.parent)}
    return subprocess.run([*DEVSTACK, mode], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_a_second_make_run_in_the_same_data_folder_is_refused_and_starts_nothing(first_run):
    datadir, holder = first_run
    second = devstack("run", datadir)
    assert second.returncode != 0, second.stdout + second.stderr
    assert (
        f"make run is already running in this checkout (pid {holder.pid}): stop it first (Ctrl-C in its terminal)"
        in second.stdout
    ), second.stdout + second.stderr
    # Nothing was started or written: no database, no Redis, no env file, no demo node.
    assert sorted(p.name for p in datadir.iterdir()) == ["run.lock"]
    assert holder.poll() is None


def test_clean_demo_is_refused_while_make_run_runs(first_run):
    datadir, holder = first_run
    (datadir / "demo-node").mkdir()
    cleaned = devstack("clean-demo", datadir)
    assert cleaned.returncode != 0
    assert f"make run is already running in this checkout (pid {holder.pid})" in cleaned.stdout, cleaned.stdout
    assert (datadir / "demo-node").exists()


def test_the_lock_is_free_again_once_the_first_run_has_ended(first_run, tmp_path):
    datadir, holder = first_run
    holder.kill()
    holder.wait()
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import devstack as module
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    with module.run_lock(datadir):
        assert (datadir / "run.lock").read_text().strip().isdigit()
