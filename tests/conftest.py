from __future__ import annotations

import django_rq
import pytest
from rq import SimpleWorker

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_redis():
    """The test Redis is private to the run: start each test with no jobs, cache or rate limits."""
    django_rq.get_connection("default").flushdb()
    yield


class Jobs:
    """Runs the queued background jobs in this process (SimpleWorker: no fork), so they see the
    test's database transaction and Django's test mail outbox."""

    def __init__(self, capture) -> None:
        self._capture = capture

    def committed(self):
        """A block whose on-commit callbacks (RQ enqueues among them) run at its end."""
        return self._capture(execute=True)

    def run(self, queue: str = "default") -> int:
        q = django_rq.get_queue(queue)
        count = q.count
        SimpleWorker([q], connection=q.connection).work(burst=True)
        return count


@pytest.fixture
def jobs(django_capture_on_commit_callbacks) -> Jobs:
    return Jobs(django_capture_on_commit_callbacks)


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def user_client(client, user):
    client.force_login(user)
    return client
