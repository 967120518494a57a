"""The production arrangement on one machine, for tests/deploy/test_topology.py: Debian's
redis-server and nginx as private processes (own configuration, loopback ports, own folders;
no system service), two gunicorn processes with deploy/gunicorn.conf.py behind nginx running
deploy/nginx/gpu-portal.conf, three `rqworker` processes and one `rqcron`, all in
PORTAL_ENV=production against the test run's PostgreSQL database. GPU nodes are sshd stand-ins
from allocations.devnode, one per node, sharing one account prefix and uid range as a site's
nodes do."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from allocations import devnode
from allocations.devnode import NodeHost, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent
METRICS_TOKEN = "topology-metrics-token-" + "x" * 20


@dataclass(frozen=True)
class SiteNode(NodeHost):
    """A stand-in node whose agent accepts the site's account prefix (not its own file prefix):
    every node of a site creates the same person's account under the same name and uid."""

    account_prefix: str = ""

    def agent_config(self) -> dict:
        return {**super().agent_config(), "account_prefix": self.account_prefix}


def site_nodes(count: int, base: Path, account_prefix: str, unix_id_base: int) -> list[SiteNode]:
    """`count` sshd node stand-ins, each with its own GPUs (the NVML replay with other UUIDs)."""
    nodes = []
    fixture = json.loads(devnode.NVML_REPLAY.read_text())
    for i in range(count):
        prefix = f"{account_prefix}n{i}"
        layout = devnode.node_layout(
            prefix=prefix, base=base / f"n{i}", run_dir=base / f"n{i}" / "run", port=free_port(),
            portal_key=str(base / "portal_ed25519"), unix_id_base=unix_id_base,
        )  # fmt: skip
        replay = dict(fixture)
        replay["devices"] = [{**d, "uuid": d["uuid"][:-4] + f"{i:04x}"} for d in fixture["devices"]]
        (base / f"n{i}").mkdir(mode=0o755, parents=True, exist_ok=True)
        replay_path = base / f"n{i}" / "nvml.json"
        replay_path.write_text(json.dumps(replay))
        host = devnode.node_prepare(dataclasses.replace(layout, nvml_replay=str(replay_path)))
        fields = {f.name: getattr(host, f.name) for f in dataclasses.fields(NodeHost)}
        nodes.append(SiteNode(**fields, account_prefix=account_prefix))
    return nodes


def self_signed_certificate(cert_path: Path, key_path: Path) -> None:
    """A certificate for 127.0.0.1, valid two days; the test's HTTPS client trusts exactly it."""
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)


class Stack:
    """Starts and stops every process; `env` is what systemd's EnvironmentFile would hold."""

    def __init__(self, tmp: Path, database_url: str, node_env: dict[str, str]) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis_port, self.https_port, self.http_port, self.metrics_port = (free_port() for _ in range(4))
        self.sockets = [tmp / f"web{i}.sock" for i in (1, 2)]
        self.static = tmp / "static"
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE"}},
            "PORTAL_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis_url,
            "SITE_URL": f"https://127.0.0.1:{self.https_port}",
            "BILLING_SUPPLIER_NAME": "국가AI컴퓨팅센터",
            "BILLING_SUPPLIER_BRN": "2208162517",
            "TRUSTED_PROXY_COUNT": "1",
            "METRICS_TOKEN": METRICS_TOKEN,
            "STATIC_ROOT": str(self.static),
            "MEDIA_ROOT": str(tmp / "media"),
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "PYTHONUNBUFFERED": "1",
            **node_env,
        }
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            cmd, env=env or self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # Redis -----------------------------------------------------------------------------------
    def redis_start(self) -> None:
        data = self.tmp / "redis"
        data.mkdir(exist_ok=True)
        self._start("redis", [
            "/usr/bin/redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
            "--protected-mode", "yes",
        ])  # fmt: skip
        wait_for_port(self.redis_port)

    def redis_stop(self) -> None:
        self.stop("redis", signal.SIGTERM)

    # the portal --------------------------------------------------------------------------------
    def collectstatic(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            env=self.env, cwd=ROOT, check=True,
        )  # fmt: skip

    def web_start(self, i: int) -> None:
        """One gunicorn 'host': its own socket and its own metrics folder."""
        metrics = self.tmp / f"web{i}-metrics"
        metrics.mkdir(exist_ok=True)
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics), "WEB_WORKERS": "2"}
        self._start(f"web{i}", [
            str(VENV_BIN / "gunicorn"), "--config", str(ROOT / "deploy/gunicorn.conf.py"),
            "--bind", f"unix:{self.sockets[i - 1]}", "portal.wsgi:application",
        ], env)  # fmt: skip

    def worker_start(self, i: int) -> None:
        self._start(f"worker{i}", [sys.executable, "manage.py", "rqworker", "default", "reconcile", "--with-scheduler"])

    def cron_start(self) -> None:
        self._start("cron", [sys.executable, "manage.py", "rqcron", "portal.cron"])

    def manage(self, *args: str) -> str:
        """A one-off command as the systemd oneshot units run it (e.g. the outbox drain timer)."""
        out = subprocess.run(
            [sys.executable, "manage.py", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    # nginx -------------------------------------------------------------------------------------
    def nginx_start(self) -> None:
        """deploy/nginx/gpu-portal.conf with loopback addresses, this run's paths and a
        self-signed certificate; the rest of the file is used as it is."""
        tls = self.tmp / "tls"
        tls.mkdir(exist_ok=True)
        self_signed_certificate(tls / "fullchain.pem", tls / "privkey.pem")
        site = (ROOT / "deploy/nginx/gpu-portal.conf").read_text()
        replacements = [
            ("server unix:/run/gpu-portal-web.sock max_fails=0;",
             "\n    ".join(f"server unix:{s} max_fails=0;" for s in self.sockets)),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;"),
            ("listen 10.0.0.10:9180;", f"listen 127.0.0.1:{self.metrics_port};"),
            ("allow 10.0.50.0/24;", "allow 127.0.0.1;"),
            ("/etc/ssl/gpu-portal/", f"{tls}/"),
            ("/srv/portal/static/", f"{self.static}/"),
            ("/var/www/letsencrypt", str(self.tmp / "acme")),
            ("gpu.example.go.kr", "localhost"),  # the public name, in ALLOWED_HOSTS
        ]  # fmt: skip
        for old, new in replacements:
            assert old in site, f"deploy/nginx/gpu-portal.conf no longer has {old!r}"
            site = site.replace(old, new)
        site = re.sub(r"\n\s*listen \[::\][^\n]*", "", site)  # loopback IPv4 only
        (self.tmp / "site.conf").write_text(site)
        temp = self.tmp / "nginx-temp"
        temp.mkdir(exist_ok=True)
        (self.tmp / "nginx.conf").write_text(f"""
# Test-only wrapper (Debian's /etc/nginx/nginx.conf does the same job in production). The test
# runs nginx as root: its folders are private to root.
user root;
worker_processes 2;
pid {self.tmp}/nginx.pid;
error_log {self.logs}/nginx-error.log;
daemon off;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {self.logs}/nginx-access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {self.tmp}/site.conf;
}}
""")
        subprocess.run(["/usr/sbin/nginx", "-t", "-q", "-c", str(self.tmp / "nginx.conf")], check=True)
        self._start("nginx", ["/usr/sbin/nginx", "-c", str(self.tmp / "nginx.conf")])
        wait_for_port(self.https_port)

    # lifecycle ---------------------------------------------------------------------------------
    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill(self, name: str) -> None:
        """SIGKILL to the process and its children (a worker and its work horse): a host gone."""
        self.stop(name, signal.SIGKILL)

    def stop_all(self, grace: float = 8) -> None:
        """SIGTERM to everything at once (RQ's warm shutdown, gunicorn's graceful stop), SIGKILL
        to whatever still runs after `grace` seconds."""
        running = [p for p in self.procs.values() if p.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def wait_web(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.exists() for s in self.sockets):
                return
            for name in ("web1", "web2"):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} ended: {self.log(name)[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not create its sockets")
