"""Attack review of issue 8 (attack8): a Redis that accepts connections but never answers (hung,
swapping, half-open network) must not hold a committed submission's request for ever: the
outbox's send after commit gives up after ~5 s per message (held; see the report)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from portal.models import OutboxMessage
from portal.services import applications as svc
from tests.factories import ApplicationFactory


@pytest.fixture
def silent_redis():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # accept, never answer
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for c in held:
        c.close()
    server.close()


@pytest.mark.django_db(transaction=True)
def test_a_submission_returns_within_seconds_when_redis_hangs(settings, silent_redis):
    settings.RQ_QUEUES = {"default": {"URL": silent_redis, "DEFAULT_TIMEOUT": 600}}
    import django_rq.queues

    if hasattr(django_rq.queues, "_connections"):
        django_rq.queues._connections.clear()
    app = ApplicationFactory()
    done = threading.Event()

    def submit() -> None:
        from django.db import connection

        svc.application_submit(application=app, actor=app.principal_investigator)
        done.set()
        connection.close()

    started = time.time()
    threading.Thread(target=submit, daemon=True).start()
    finished = done.wait(15)
    assert OutboxMessage.objects.exists()
    assert finished, f"still blocked after {time.time() - started:.0f}s (gunicorn's default worker timeout is 30 s)"
