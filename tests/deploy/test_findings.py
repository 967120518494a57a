"""Findings of the outside review of deploy/: each test reproduces what an operator or an
attacker would meet with the files as shipped (the unit files, the backup scripts)."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shlex
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import django_rq
import pytest
import requests
from django.db import connection

from tests.deploy.test_backup_restore import BACKUP, pg_env  # noqa: F401 - fixture
from tests.deploy.topology import METRICS_TOKEN as METRICS_TOKEN_FOR_WEB

ROOT = Path(__file__).resolve().parent.parent.parent
WORKER_UNIT = ROOT / "deploy/systemd/gpu-portal-worker@.service"
WEB_UNIT = ROOT / "deploy/systemd/gpu-portal-web.service"


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


# Through nginx with deploy/nginx/gpu-portal.conf and two gunicorns (no workers, no nodes) -------


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    """nginx in front of the two gunicorns of the topology test, on this run's database."""
    from tests.deploy.topology import Stack

    if not Path("/usr/sbin/nginx").exists() or not Path("/usr/bin/redis-server").exists():
        pytest.fail("scripts/bootstrap.sh test installs nginx and redis-server (as root)")
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'].replace('/', '%2F')}:{db['PORT'] or 5432}/{db['NAME']}"
    stack = Stack(tmp_path_factory.mktemp("findings-web"), url, {})
    try:
        stack.redis_start()
        stack.collectstatic()
        for i in (1, 2):
            stack.web_start(i)
        stack.wait_web()
        stack.nginx_start()
        yield stack
    finally:
        stack.stop_all()


def raw_get(stack, path: str, port: int | None = None, **headers: str) -> http.client.HTTPResponse:
    """One request exactly as written (no client-side path normalisation)."""
    if port is None:
        context = ssl.create_default_context(cafile=str(stack.tmp / "tls/fullchain.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", stack.https_port, context=context, timeout=10)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", "localhost")
    for name, value in headers.items():
        conn.putheader(name.replace("_", "-"), value)
    conn.endheaders()
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


@pytest.mark.django_db(transaction=True)
def test_metrics_stays_closed_on_the_public_listener_however_the_path_is_spelled(web):
    """An attacker who learned the token (a leaked Prometheus config) still must not scrape from
    the Internet: nginx's `location = /metrics` must not be sidestepped by another spelling that
    Django resolves to the same view."""
    auth = {"Authorization": f"Bearer {METRICS_TOKEN_FOR_WEB}"}
    assert raw_get(web, "/metrics", port=web.metrics_port, **auth).status == 200  # the token is right
    spellings = ["/metrics", "/metrics/", "//metrics", "/%6Detrics", "/metrics?x=1", "/./metrics", "/x/../metrics",
                 "/metrics;x", "/metrics%3Bx", "/ko/metrics", "/en/metrics", "/METRICS", "/metrics%20"]  # fmt: skip
    opened = {p: raw_get(web, p, **auth).status for p in spellings}
    assert not [p for p, status in opened.items() if status == 200], opened


@pytest.mark.django_db(transaction=True)
def test_a_forged_forwarded_for_header_does_not_lift_the_per_address_sign_in_limit(web):
    """allauth allows 10 failed sign-ins a minute per client address. The client writes whatever
    it likes into X-Forwarded-For; nginx appends the real address and the portal reads only that."""
    session = requests.Session()
    base = f"https://127.0.0.1:{web.https_port}"
    cert = str(web.tmp / "tls/fullchain.pem")
    limited = False
    for i in range(13):
        form = session.get(f"{base}/accounts/login/", verify=cert, timeout=10, headers={"Accept-Language": "en"}).text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        answer = session.post(
            f"{base}/accounts/login/",
            data={"csrfmiddlewaretoken": csrf, "login": f"nobody{i}@example.org", "password": "wrong"},
            headers={"Referer": "https://127.0.0.1/accounts/login/", "Accept-Language": "en",
                     "X-Forwarded-For": f"198.51.100.{i + 1}"},
            verify=cert, timeout=10,
        )  # fmt: skip
        if answer.status_code == 429 or "Too many failed" in answer.text:
            limited = True
            break
    assert limited, "13 failed sign-ins from one address, each with another forged X-Forwarded-For, were never limited"


@pytest.mark.django_db(transaction=True)
def test_the_access_log_names_the_real_client_not_the_address_a_client_wrote(web):
    """An operator (or fail2ban) reading gunicorn's access log must see the address nginx saw;
    a forged X-Forwarded-For must not put someone else's address, or a fake log line, first."""
    probe = secrets.token_hex(6)
    forged = '203.0.113.66 "GET /admin/ HTTP/1.1" 200 0'
    assert raw_get(web, f"/rates/?probe={probe}", X_Forwarded_For=forged).status in {200, 301, 302}
    deadline = time.monotonic() + 10
    while not (lines := [ln for ln in (web.log("web1") + web.log("web2")).splitlines() if probe in ln]):
        assert time.monotonic() < deadline, "the request is not in gunicorn's access log"
        time.sleep(0.2)
    assert lines[0].startswith('127.0.0.1 "GET /rates/'), lines[0]
    assert "203.0.113.66" not in lines[0], lines[0]


def test_the_web_unit_still_starts_after_the_documented_rollout_renames_the_checkout(tmp_path):
    """docs/deployment.md builds the new release's .venv in /srv/portal/app.new, then renames it
    to /srv/portal/app. pip writes each console script (bin/gunicorn) with the absolute path of
    the venv's python it was installed with, app.new's: after the rename that interpreter is
    gone, and the next start of the web unit (a reboot, a restart) fails."""
    venv = tmp_path / "app.new/.venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    shared = [p for p in sys.path if p.endswith("site-packages") and Path(p, "gunicorn").is_dir()]
    (site / "shared.pth").write_text("\n".join(shared) + "\n")  # gunicorn & co., as pip install would
    from pip._vendor.distlib.scripts import ScriptMaker  # what pip writes bin/ scripts with

    maker = ScriptMaker(None, str(venv / "bin"))
    maker.executable = str(venv / "bin/python")
    maker.variants = {""}
    maker.make("gunicorn = gunicorn.app.wsgiapp:run")
    (tmp_path / "app.new").rename(tmp_path / "app")  # mv /srv/portal/app.new /srv/portal/app
    argv = shlex.split(unit_setting(WEB_UNIT, "ExecStart", "").replace("/srv/portal/app", str(tmp_path / "app")))
    program = argv[: argv.index("--config")]
    try:
        started = subprocess.run([*program, "--version"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:  # systemd: status=203/EXEC
        pytest.fail(f"{program[0]} cannot start after the rename: {exc} ({Path(program[0]).read_text()[:60]!r})")
    assert started.returncode == 0, f"{program}: {started.stderr}"
    assert "gunicorn" in started.stdout + started.stderr


@pytest.mark.django_db(transaction=True)
def test_the_restore_fingerprint_sees_one_changed_value_in_one_row(pg_env):  # noqa: F811
    """The drill's comparison must be able to fail: one field of one row changed (a migration's
    timestamp here) changes that table's line and no other."""
    from tests.deploy.test_backup_restore import fingerprint

    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, applied FROM django_migrations ORDER BY id LIMIT 1")
        row_id, applied = cursor.fetchone()
    before = fingerprint(pg_env, name).splitlines()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE django_migrations SET applied = applied + interval '1 second' WHERE id = %s", [row_id]
            )
        after = fingerprint(pg_env, name).splitlines()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE django_migrations SET applied = %s WHERE id = %s", [applied, row_id])
    changed = [b.split("|")[0] for b, a in zip(before, after, strict=True) if a != b]
    assert changed == ["django_migrations"]
    assert fingerprint(pg_env, name).splitlines() == before


def tls12_handshake(stack, cipher: str) -> bool:
    import socket

    context = ssl.create_default_context(cafile=str(stack.tmp / "tls/fullchain.pem"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    try:
        with socket.create_connection(("127.0.0.1", stack.https_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return True
    except ssl.SSLError:
        return False


@pytest.mark.django_db(transaction=True)
def test_tls_1_2_offers_only_forward_secret_aead_ciphers(web):
    """Mozilla's "intermediate" profile for a public service: TLS 1.2 with ECDHE and AES-GCM or
    ChaCha20 only. nginx's default list (HIGH:!aNULL:!MD5) also offers the CBC suites with SHA-1
    and SHA-384 MACs, which scanners (SSL Labs, the ministry's audits) flag as weak."""
    assert tls12_handshake(web, "ECDHE-ECDSA-AES128-GCM-SHA256")
    for weak in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"):
        assert not tls12_handshake(web, weak), weak


@pytest.mark.parametrize("unit", ["gpu-portal-web.service", "gpu-portal-worker@.service", "gpu-portal-cron.service"])
def test_the_long_running_units_are_confined_by_systemd(unit, tmp_path):
    """A flaw in the portal (or in a dependency: WeasyPrint, paramiko) runs as `gpu-portal`
    with whatever the unit leaves open: capabilities, other processes, namespaces, the kernel's
    knobs, any system call. `systemd-analyze security` rates the unit file (lower is tighter)."""
    if not Path("/usr/bin/systemd-analyze").exists():
        pytest.skip("systemd-analyze is not installed")
    name = unit.replace("@.", "@1.")
    (tmp_path / name).write_text((ROOT / "deploy/systemd" / unit).read_text())
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(tmp_path / name)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout + out.stderr)
    assert level, out.stdout + out.stderr
    assert float(level.group(1)) <= 5.0, out.stdout[-3000:]
