"""localstripe (a stateful Stripe emulator) on loopback for the payment tests, a recording HTTP
server for the Checkout requests localstripe lacks, and a signer for webhook events."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import requests

from tests.processes import stop_process

WEBHOOK_SECRET = "whsec_test_portal"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def localstripe_url():
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="localstripe-")
    script = Path(__file__).with_name("localstripe_server.py")
    log = Path(tmp) / "localstripe.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(port)],
            env={**os.environ, "TMPDIR": tmp},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a loaded CI machine imports aiohttp slowly
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            requests.get(url + "/v1/customers", auth=("sk_test_x", ""), timeout=5)
            break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        stop_process(proc, grace=0)
        pytest.fail(f"localstripe did not start:\n{log.read_text(errors='replace')[-2000:]}")
    yield url
    stop_process(proc)


@pytest.fixture
def stripe_settings(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_portal"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    return settings


@pytest.fixture
def localstripe(localstripe_url, stripe_settings):
    requests.delete(localstripe_url + "/_config/data", timeout=5)
    stripe_settings.STRIPE_API_BASE = localstripe_url
    return localstripe_url


class Recorder:
    """Answers Stripe API calls with canned objects and keeps each request (path, headers, form)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.checkout_url = ""  # where the canned Checkout session sends the browser
        # Set to refuse Checkout sessions as Stripe does: (HTTP status, error object, request id).
        self.checkout_refusal: tuple[int, dict, str] | None = None

    def find(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def recorder(stripe_settings):
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            rec.requests.append({"path": self.path, "headers": dict(self.headers), "form": dict(parse_qsl(body))})
            status, headers = 200, {}
            if self.path == "/v1/checkout/sessions" and rec.checkout_refusal:
                status, error, request_id = rec.checkout_refusal
                answer, headers = {"error": error}, {"Request-Id": request_id}
            elif self.path == "/v1/customers":
                answer = {"id": "cus_recorded", "object": "customer"}
            else:
                n = len(rec.requests)
                url = rec.checkout_url or f"https://pay.test/cs_test_{n}"
                answer = {"id": f"cs_test_{n}", "object": "checkout.session", "url": url}
            data = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stripe_settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    yield rec
    server.shutdown()
    server.server_close()


def signed(event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, str]:
    """The body and Stripe-Signature header Stripe would send: t=TS,v1=HMAC_SHA256(secret, "TS.body")."""
    body = json.dumps(event).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={ts},v1={mac}"


def event(event_id: str, type_: str, obj: dict, *, created: int | None = None) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": created or int(time.time()),
        "livemode": False,
        "api_version": "2024-06-20",
        "data": {"object": obj},
    }
