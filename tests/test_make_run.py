"""`make run` as a newcomer uses it: the devstack in a subprocess with its own data folder and
demo node prefix, an approval of the demo application, the grant `active` on the demo GPU node,
an SSH login and JupyterLab through the printed tunnel with the demo researcher's key, an
operator command against the running stack, the printed install_agent command installing exactly
what the bootstrap did, the node's pushed samples becoming the grant's usage, Ctrl-C stopping
the demo accounts' processes (the next run starts the Jupyter again), `make clean-demo`, and the
next run bringing the node back in line with the database. Needs root (the demo node creates
accounts)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from allocations.devnode import free_port, live_processes
from tests.allocations.jupyter_client import http_status, ssh_tunnel

ROOT = Path(__file__).resolve().parents[1]
DEVSTACK = [sys.executable, str(ROOT / "scripts/devstack.py")]
# Settings of the test run that must not leak into the stack under test.
TEST_ONLY = {"DATABASE_URL", "REDIS_URL", "PORTAL_ENV", "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the demo node creates unix accounts: needs root")

APPROVE = """
from portal.models import Application, User
from portal.services import applications as svc
app = Application.objects.get(principal_investigator__email="researcher@demo-univ.ac.kr")
svc.application_approve(
    application=app, actor=User.objects.get(email="approver@demo-ministry.go.kr"), gpu_model=app.gpu_model,
    gpu_count=app.gpu_count, gpu_hours=app.gpu_hours, starts_on=app.starts_on, ends_on=app.ends_on,
)
"""
GRANT = """
import json
from allocations.models import Grant, JupyterSession, NodeAccount
from allocations.services import jupyter
g = Grant.objects.get(application__principal_investigator__email="researcher@demo-univ.ac.kr")
a = NodeAccount.objects.filter(user=g.application.principal_investigator).first()
s = JupyterSession.objects.filter(grant=g).first()
print("RESULT" + json.dumps({"status": g.status, "reason": g.status_reason, "username": a and a.username,
    "socket": s and s.socket_path, "jupyter": s and s.state, "token": s and jupyter.session_token(s)}))
"""
# The demo node's pushed samples as the grant's usage: the hours the periodic usage job builds
# (every 10 minutes, complete hours only) built now for this hour and the one before.
USAGE = """
import json
from datetime import UTC, datetime, timedelta
from allocations.models import Grant, SampleBatch, UsageHour
from allocations.services.usage import hour_start, usage_hour_build
g = Grant.objects.get(application__principal_investigator__email="researcher@demo-univ.ac.kr")
batches = SampleBatch.objects.filter(node__hostname="gpu-demo-01").count()
if batches:
    for hour in (hour_start(datetime.now(UTC)) - timedelta(hours=1), hour_start(datetime.now(UTC))):
        usage_hour_build(hour=hour)
hours = UsageHour.objects.filter(grant=g, sample_count__gt=0, avg_utilization__isnull=False)
print("RESULT" + json.dumps({"batches": batches, "usage_hours": hours.count()}))
"""
# Where a newcomer's first install_agent put the push file before it was given --push-config.
SHARED_PUSH_FILE = Path("/etc/gpu-portal/push.json")


def shared_push_file_of(port: int) -> list[str]:
    """The machine-wide push file, when it points to the portal on `port` (test runs of other
    checkouts may write theirs there)."""
    try:
        url = json.loads(SHARED_PUSH_FILE.read_text())["url"]
    except (OSError, ValueError, KeyError):
        return [str(SHARED_PUSH_FILE)] if SHARED_PUSH_FILE.exists() else []
    return [str(SHARED_PUSH_FILE)] if url.startswith(f"http://127.0.0.1:{port}/") else []


class Stack:
    def __init__(self, datadir: Path, prefix: str) -> None:
        self.datadir = datadir
        self.prefix = prefix
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY}
        self.env.update(
            DEVDATA=str(datadir),
            PORTAL_PORT=str(self.port),
            DEMO_PREFIX=prefix,
            DEMO_UNIX_ID_BASE=str(40_000_000 + secrets.randbelow(10_000) * 10_000),
        )
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.log = open(self.datadir.parent / f"{self.datadir.name}-run{self.runs}.log", "wb")
        self.proc = subprocess.Popen(
            [*DEVSTACK, "run"], env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/accounts/login/", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("the portal never answered:\n" + self.output())

    def output(self, tail: int = 4000) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-tail:]

    def interrupt(self) -> tuple[int, float]:
        """Ctrl-C; returns the exit status and how long stopping took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        return rc, time.monotonic() - started

    def make(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "-s", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    def shell(self, code: str) -> dict:
        done = subprocess.run(
            [*DEVSTACK, "manage", "shell", "-c", code], env=self.env, cwd=ROOT, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
        return json.loads(lines[-1][len("RESULT") :]) if lines else {}

    def wait_for_grant(self, want: dict, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            grant = self.shell(GRANT)
            if all(grant.get(k) == v for k, v in want.items()):
                return grant
            assert time.monotonic() < deadline, f"{grant}\n{self.output()}"
            time.sleep(1)

    def node(self) -> SimpleNamespace:
        host = json.loads((self.datadir / "demo-node/node.json").read_text())
        return SimpleNamespace(address=host["address"], ssh_port=host["port"], host_key=host["host_key"])

    def ssh(self, username: str, command: str, tmp_path: Path) -> subprocess.CompletedProcess:
        node, key = self.node(), self.datadir / "demo-node/researcher_ed25519"
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[{node.address}]:{node.ssh_port} {node.host_key}\n")
        return subprocess.run(
            ["ssh", "-F", "/dev/null", "-p", str(node.ssh_port), "-i", str(key),
             "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}",
             "-o", "StrictHostKeyChecking=yes", f"{username}@{node.address}", command],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip


def left_on_the_machine(prefix: str, datadir: Path, port: int) -> list[str]:
    found = [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith(prefix)]
    found += [g.gr_name for g in grp.getgrall() if g.gr_name.startswith(prefix)]
    paths = [f"/etc/sudoers.d/gpu-portal-{prefix}prov", f"/usr/local/sbin/gpu-portal-agent-{prefix}",
             f"/etc/gpu-portal-{prefix}", f"/var/lib/gpu-portal-{prefix}", f"/run/gpu-portal-{prefix}",
             str(datadir / "demo-node")]  # fmt: skip
    return found + [p for p in paths if os.path.lexists(p)] + shared_push_file_of(port)


@pytest.fixture
def stack():
    # Not under /var/tmp: sshd's StrictModes refuses keys below a world-writable folder.
    datadir = Path(tempfile.mkdtemp(prefix="gpu-portal-demo-", dir="/run"))
    datadir.chmod(0o755)
    stack = Stack(datadir, prefix=f"gpx{secrets.token_hex(2)}")
    yield stack
    if stack.proc and stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGINT)
        stack.proc.wait(timeout=30)
    subprocess.run([*DEVSTACK, "clean-demo"], env=stack.env, cwd=ROOT, capture_output=True, check=False)
    shutil.rmtree(datadir, ignore_errors=True)
    for log in datadir.parent.glob(f"{datadir.name}-run*.log"):
        log.unlink()


def test_make_run_gives_the_demo_researcher_ssh_and_jupyter_after_an_approval_and_cleans_up(stack, tmp_path):
    stack.start()
    assert f"{stack.prefix}prov" in stack.output(tail=0)  # it says what it created on this machine

    stack.shell(APPROVE)
    grant = stack.wait_for_grant({"status": "active", "jupyter": "running"})

    login = stack.ssh(grant["username"], "id -un; echo $CUDA_VISIBLE_DEVICES", tmp_path)
    assert login.returncode == 0, login.stderr
    assert login.stdout.splitlines()[0] == grant["username"]
    assert login.stdout.splitlines()[1].count("GPU-") == 8
    key = stack.datadir / "demo-node/researcher_ed25519"
    with ssh_tunnel(stack.node(), grant["username"], key, grant["socket"], tmp_path) as port:
        assert http_status(port, grant["token"], "/lab") == 200

    # Mail in development: one decoded UTF-8 file per message, links whole.
    mails = [p.read_text(encoding="utf-8") for p in (stack.datadir / "mail").glob("*.txt")]
    assert any(f"http://127.0.0.1:{stack.port}/applications/" in m and "승인" in m for m in mails), mails

    # An operator command from docs/nodes.md against the running stack, through `make manage`.
    node = stack.node()
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(stack.datadir / "demo-node/host_ed25519.pub")], capture_output=True, text=True
    ).stdout.split()[1]
    added = stack.make(
        "manage",
        f"ARGS=add_node gpu-h100-extra {node.address} --port {node.ssh_port} --gpu-model H100-80GB"
        f" --fingerprint {fingerprint}",
    )
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"Pinned {fingerprint} for gpu-h100-extra." in added.stdout

    # ... and installing the demo node's agent again by hand, with the command `make run` printed.
    # It installs exactly what the bootstrap did: the same agent configuration (uid range,
    # push file in the node's own folder), a new samples token, nothing in /etc/gpu-portal/.
    agent_json = Path(f"/etc/gpu-portal-{stack.prefix}/agent.json")
    push_json = agent_json.with_name("push.json")
    configured, pushed = agent_json.read_text(), json.loads(push_json.read_text())
    printed = next(line for line in stack.output(tail=0).splitlines() if 'make manage ARGS="install_agent' in line)
    installed = stack.make("manage", "ARGS=" + printed.split('ARGS="', 1)[1].rstrip('"'))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "gpu-demo-01: 8 GPUs, status online." in installed.stdout
    assert "Connected (version" not in installed.stdout + installed.stderr  # no paramiko chatter
    assert agent_json.read_text() == configured
    repushed = json.loads(push_json.read_text())
    assert repushed["url"] == pushed["url"] == f"http://127.0.0.1:{stack.port}/api/v1/nodes/gpu-demo-01/samples"
    assert repushed["token"] != pushed["token"]
    assert shared_push_file_of(stack.port) == []

    # The node pushes its (replayed) samples every minute, as a real node's timer does; with
    # the new token too. They become the grant's usage hours.
    before = stack.shell(USAGE)["batches"]
    deadline = time.monotonic() + 150
    while (usage := stack.shell(USAGE))["batches"] <= before or not usage["usage_hours"]:
        assert time.monotonic() < deadline, f"{usage}\n{stack.output()}"
        time.sleep(3)
    assert "GPU samples reach the portal" in stack.output(tail=0)

    rc, took = stack.interrupt()
    assert rc == 0, stack.output()
    assert took < 5, took
    # Nothing the demo node started for its users outlives `make run` (JupyterLab among them).
    left = live_processes(pwd.getpwnam(grant["username"]).pw_uid)
    assert left == [], subprocess.run(["ps", "-o", "pid,stat,cmd", *map(str, left)], capture_output=True).stdout
    assert f"stopped the processes of {grant['username']}" in stack.output(), stack.output()
    assert not (stack.datadir / "redis/redis.sock").exists()
    assert not (stack.datadir / "pg/.s.PGSQL.5432").exists()

    # The next run (the accounts kept) starts the active grant's JupyterLab again.
    stack.start()
    uid = pwd.getpwnam(grant["username"]).pw_uid
    deadline = time.monotonic() + 90
    while not live_processes(uid):
        assert time.monotonic() < deadline, stack.output()
        time.sleep(1)
    rc, _took = stack.interrupt()
    assert rc == 0 and live_processes(uid) == [], stack.output()

    cleaned = stack.make("clean-demo")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert left_on_the_machine(stack.prefix, stack.datadir, stack.port) == []

    # The next run creates the node again and the reconciliation gives the grant's access back.
    stack.start()
    grant = stack.wait_for_grant({"status": "active", "jupyter": "running"})
    deadline = time.monotonic() + 60
    while (login := stack.ssh(grant["username"], "id -un", tmp_path)).returncode != 0:
        assert time.monotonic() < deadline, login.stderr + stack.output()
        time.sleep(1)
    assert login.stdout.strip() == grant["username"]
