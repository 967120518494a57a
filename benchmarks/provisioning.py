"""Provisioning throughput: grants from approval to active across stand-in GPU nodes (issue 13).

    BENCH_ONLY=provisioning.py make bench      (as root: it creates unix accounts and sshd's)

What runs is the real chain: the approval service, the outbox, 4 RQ workers
(`manage.py rqworker`, one with the scheduler for retries), placement, and for each task an
SSH connection (paramiko, pinned host key) to the node's sshd, `sudo -n` and the node agent
installed by the real installer, which creates the account, writes its keys, sets the GPU ACLs
and starts the user's Jupyter server. It measures:

1. one grant on an idle system: approval to a working SSH login with the researcher's key;
2. `BENCH_PROV_GRANTS` (100) grants approved one after the other: approval of the first to the
   last one active, and each grant's approval-to-active time.

What the stand-in nodes are, and what that does not measure:

- `BENCH_PROV_NODES` (20) nodes are 20 sshd's on loopback ports, each with its own host key,
  agent, configuration, sudo rule, provisioning account, managed group (its sshd drop-in reads
  keys only for its own group), state folder and GPU device stand-ins (8 GPUs each, NVML
  replayed). They share one machine: its /etc/passwd, its 2 cores and its disk. All their
  accounts carry the portal's one account prefix; every grant has its own principal
  investigator, so each account is managed by the one node its grant is placed on.
- Every node's work runs on the same 2 cores as the portal, PostgreSQL, Redis and the workers;
  20 real nodes would each bring their own CPUs. So the times are an upper bound for the
  portal's side.
- Jupyter: the agent starts a stand-in (`jupyter` that binds the unix socket and answers), not
  JupyterLab: a real JupyterLab start costs ~1.5 s of CPU (docs/benchmarks.md), which on a real
  node runs on that node's own CPUs, 5 starts per node for 100 grants on 20 nodes (~8 s per
  node, in parallel across nodes). Started on one shared 2-core machine, 100 JupyterLabs would
  need ~150 s of CPU and ~10 GB of memory, measuring this machine rather than the portal.

Everything it creates carries a random prefix and is removed at the end (also on Ctrl-C).
Results go to `docs/benchmarks.md` (between the `bench:provisioning` markers) and
`docs/benchmarks-provisioning.json`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NODES = int(os.environ.get("BENCH_PROV_NODES", 20))
GRANTS = int(os.environ.get("BENCH_PROV_GRANTS", 100))
WORKERS = int(os.environ.get("BENCH_PROV_WORKERS", 4))
TIMEOUT = float(os.environ.get("BENCH_PROV_TIMEOUT", 600))
RID = secrets.token_hex(3)
PREFIX = f"gpb{RID}"  # the portal's account prefix for this run; nodes' files use PREFIX + "n<i>"
BASE = Path(f"/run/gpu-portal-bench-{RID}")
# Node accounts run the Jupyter stand-in from here, so it is root's alone (0755, every folder above
# it too): the agent refuses a Jupyter anyone else could change (`unsafe_jupyter`), as under the
# world-writable /var/tmp.
SHARED = Path(f"/var/lib/gpu-portal-bench-{RID}")
DOC = ROOT / "docs" / "benchmarks.md"
JSON_OUT = ROOT / "docs" / "benchmarks-provisioning.json"
BEGIN, END = "<!-- bench:provisioning:begin -->", "<!-- bench:provisioning:end -->"

os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    NODE_ACCOUNT_PREFIX=PREFIX,
    NODE_UNIX_ID_BASE=str(20_000_000 + secrets.randbelow(10_000) * 10_000),
    PROVISIONING_SSH_KEY=str(BASE / "portal_ed25519"),
    PROVISIONING_BACKOFF_SECONDS="1",
    DEV_MAIL_DIR=str(SHARED / "mail"),  # the approval e-mails go away with the run
)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from allocations import devnode, ssh  # noqa: E402
from allocations.devnode import NodeHost  # noqa: E402
from allocations.models import Grant  # noqa: E402

JUPYTER_STANDIN = """#!/usr/bin/python3
# Stand-in for `jupyter lab --ServerApp.sock=PATH ...`: binds the socket and accepts connections.
import os, socket, sys
path = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--ServerApp.sock="))
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o600)
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}")
    c.close()
"""


@dataclass(frozen=True)
class BenchNode(NodeHost):
    """A stand-in node whose agent manages the portal's accounts (the run's shared prefix)
    while everything else on it (files, sudo rule, managed group) carries its own prefix."""

    account_prefix: str = ""

    def agent_config(self) -> dict:
        return {**super().agent_config(), "account_prefix": self.account_prefix}


def say(msg: str) -> None:
    print(f"[provisioning] {msg}", flush=True)


def replay(i: int) -> str:
    """The recorded NVML answer with GPU UUIDs of node `i`'s own (a GPU's UUID is unique)."""
    data = json.loads(Path(devnode.NVML_REPLAY).read_text())
    for device in data["devices"]:
        device["uuid"] = f"{device['uuid'][:-4]}{i:04x}"
    path = SHARED / f"nvml-n{i}.json"
    path.write_text(json.dumps(data))
    return str(path)


def nodes_start(jupyter: str) -> tuple[list[BenchNode], list[subprocess.Popen]]:
    hosts, procs = [], []
    for i in range(NODES):
        layout = devnode.node_layout(
            prefix=f"{PREFIX}n{i}", base=BASE / f"n{i}", run_dir=BASE / f"n{i}" / "run", port=devnode.free_port(),
            portal_key=str(BASE / "portal_ed25519"), unix_id_base=settings.NODE_UNIX_ID_BASE,
        )  # fmt: skip
        prepared = devnode.node_prepare(layout)
        values = {**asdict(prepared), "base": prepared.base, "sshd": prepared.sshd}
        host = BenchNode(**{**values, "jupyter_bin": jupyter, "account_prefix": PREFIX, "nvml_replay": replay(i)})
        procs.append(devnode.sshd_start(host))
        hosts.append(host)
    ssh.ensure_key_pair(str(BASE / "portal_ed25519"))
    return hosts, procs


def nodes_remove(hosts: list[BenchNode], procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        devnode.sshd_stop(proc)
    devnode.remove_accounts([PREFIX])
    for host in hosts:
        devnode.node_remove(host)
    shutil.rmtree(BASE, ignore_errors=True)
    shutil.rmtree(SHARED, ignore_errors=True)


def applications(n: int) -> list:
    """`n` submitted applications for 1 GPU each, every one with its own principal investigator
    and SSH key, in one organisation (an ordinary university)."""
    from allocations.services.keys import sshkey_add
    from portal.models import Application
    from portal.services import applications as svc
    from tests.factories import ApplicationFactory, CallFactory, MembershipFactory, UserFactory

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # nobody signs in
    call = CallFactory()
    first = ApplicationFactory(call=call, gpu_count=1, gpu_hours=100)
    apps = [first]
    domain = first.organisation.domains.first().domain
    for k in range(n - 1):
        pi = MembershipFactory(organisation=first.organisation, user=UserFactory(email=f"bench{k}@{domain}")).user
        apps.append(ApplicationFactory(call=call, organisation=first.organisation, principal_investigator=pi,
                                       gpu_count=1, gpu_hours=100))  # fmt: skip
    keys = SHARED / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    approver = UserFactory(email=f"approver-{RID}@ministry.go.kr", is_staff=True)
    result = []
    for k, app in enumerate(apps):
        key = keys / f"user{k}"
        sshkey_add(user=app.principal_investigator, text=devnode.keygen(key, comment=f"user{k}"), name="laptop")
        app = svc.application_submit(application=app, actor=app.principal_investigator)
        app = svc.application_start_review(application=app, actor=approver)
        result.append((Application.objects.get(pk=app.pk), key))
    return [(app, key, approver) for app, key in result]


def approve(app, approver) -> Grant:
    from portal.services import applications as svc

    today = timezone.localdate()
    return svc.application_approve(
        application=app, actor=approver, gpu_model="H100-80GB", gpu_count=1, gpu_hours=100,
        starts_on=today, ends_on=today + timedelta(days=30), confirm_outside_window=True,
    )  # fmt: skip


def ssh_login(grant: Grant, key: Path) -> bool:
    import paramiko

    from allocations.models import NodeAccount

    node = grant.assignments.select_related("node").first()
    if node is None:
        return False
    node = node.node
    account = NodeAccount.objects.filter(user=grant.application.principal_investigator, node=node).first()
    if account is None:
        return False
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_type, key_b64 = node.host_key.split()[:2]
    import base64

    client.get_host_keys().add(
        f"[{node.address}]:{node.ssh_port}",
        key_type,
        paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)),
    )
    try:
        client.connect(node.address, port=node.ssh_port, username=account.username, key_filename=str(key),
                       timeout=5, allow_agent=False, look_for_keys=False)  # fmt: skip
        _in, out, _err = client.exec_command("whoami", timeout=10)
        return out.read().decode().strip() == account.username
    except (paramiko.SSHException, OSError):
        return False
    finally:
        client.close()


def time_to_login(app, key: Path, approver) -> dict:
    start = time.perf_counter()
    grant = approve(app, approver)
    approved = time.perf_counter() - start
    while time.perf_counter() - start < TIMEOUT:
        if ssh_login(grant, key):
            grant.refresh_from_db()
            return {"approval_s": round(approved, 2), "login_s": round(time.perf_counter() - start, 2),
                    "status_at_login": grant.status}  # fmt: skip
        time.sleep(0.1)
    raise SystemExit(f"no SSH login within {TIMEOUT} s; grant {grant.pk}: {grant.status} {grant.status_reason}")


def burst(items) -> dict:
    """Approve every application one after the other, then wait until all grants are active."""
    approved_at: dict[int, float] = {}
    active_at: dict[int, float] = {}
    start = time.perf_counter()
    for app, _key, approver in items:
        grant = approve(app, approver)
        approved_at[grant.pk] = time.perf_counter()
    approvals = time.perf_counter() - start
    while len(active_at) < len(approved_at) and time.perf_counter() - start < TIMEOUT:
        for pk in Grant.objects.filter(pk__in=approved_at, status=Grant.Status.ACTIVE).values_list("pk", flat=True):
            active_at.setdefault(pk, time.perf_counter())
        time.sleep(0.2)
    if len(active_at) < len(approved_at):
        stuck = Grant.objects.filter(pk__in=approved_at).exclude(status=Grant.Status.ACTIVE)
        raise SystemExit(f"{stuck.count()} grants not active after {TIMEOUT} s: {stuck.first().status_reason}")
    latencies = sorted(active_at[pk] - approved_at[pk] for pk in approved_at)
    return {
        "grants": len(approved_at),
        "approving_all_s": round(approvals, 1),
        "first_approval_to_last_active_s": round(max(active_at.values()) - start, 1),
        "approval_to_active_median_s": round(statistics.median(latencies), 1),
        "approval_to_active_max_s": round(latencies[-1], 1),
        "grants_per_minute": round(len(approved_at) / ((max(active_at.values()) - start) / 60), 1),
    }


def workers_start() -> list[subprocess.Popen]:
    cmd = [sys.executable, str(ROOT / "manage.py"), "rqworker", "default"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(SHARED / "workers.log", "ab")
    procs = []
    for i in range(WORKERS):  # one with the scheduler: retried tasks come back through it
        args = [*cmd, "--with-scheduler"] if i == 0 else cmd
        proc = subprocess.Popen(  # noqa: S603 - our own manage.py, fixed arguments
            args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        procs.append(proc)
    return procs


def workers_stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def markdown(report: dict) -> str:
    one, many = report["one_grant"], report["burst"]
    verdict = "met" if many["first_approval_to_last_active_s"] < 60 else "**missed**"
    return "\n".join([
        BEGIN,
        f"### Provisioning (`benchmarks/provisioning.py`), {report['when']}",
        "",
        f"Command: `BENCH_ONLY=provisioning.py make bench`. {report['nodes']} stand-in nodes (sshd on loopback ports, "
        f"the real agent and installer, Jupyter stand-in), {report['workers']} RQ workers, load average "
        f"{report['load_average_at_start']} at the start, {os.cpu_count()} CPUs shared by everything.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| one grant, approval to a working SSH login | {one['login_s']} s (approval itself {one['approval_s']} s) "
        f"| < 10 s: {'met' if one['login_s'] < 10 else '**missed**'} |",
        f"| {many['grants']} grants approved in a row: first approval to the last one active | "
        f"{many['first_approval_to_last_active_s']} s ({many['grants_per_minute']} grants/min; approving them took "
        f"{many['approving_all_s']} s) | < 60 s: {verdict} |",
        f"| each grant, approval to active | median {many['approval_to_active_median_s']} s, "
        f"max {many['approval_to_active_max_s']} s | |",
        END,
    ])  # fmt: skip


def main() -> int:
    if os.geteuid() != 0 or devnode.missing_binaries():
        say("skipped: needs root, sshd and sudo (it creates unix accounts, sudo rules and sshd's)")
        return 0
    SHARED.mkdir(mode=0o755, parents=True)
    SHARED.chmod(0o755)  # whatever the umask: readable by the node accounts, writable by root alone
    jupyter = SHARED / "jupyter"
    jupyter.write_text(JUPYTER_STANDIN)
    jupyter.chmod(0o755)
    hosts, sshds, workers = [], [], []
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        load = [round(x, 2) for x in os.getloadavg()]
        say(f"starting {NODES} nodes (prefix {PREFIX})")
        hosts, sshds = nodes_start(str(jupyter))
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:  # the installer runs over SSH: a few at a time
            list(pool.map(lambda ih: (django.db.connections.close_all(),
                                      devnode.node_bootstrap(ih[1], hostname=f"bench-{RID}-n{ih[0]}"))[1],
                          enumerate(hosts)))  # fmt: skip
        say(f"{NODES} nodes installed in {time.perf_counter() - started:.0f} s")
        items = applications(GRANTS + 1)
        workers = workers_start()
        time.sleep(3)  # the workers connect
        one = time_to_login(*items[0])
        say(f"one grant: approval to SSH login {one['login_s']} s")
        many = burst(items[1:])
        say(f"{many}")
    finally:
        workers_stop(workers)
        nodes_remove(hosts, sshds)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nodes": NODES,
        "workers": WORKERS,
        "load_average_at_start": load,
        "one_grant": one,
        "burst": many,
    }
    JSON_OUT.write_text(json.dumps(report, indent=2) + "\n")
    text = DOC.read_text()
    block = markdown(report)
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)
    say(f"wrote {DOC} and {JSON_OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
