from __future__ import annotations

import time

import django_rq
import pytest
from django.conf import settings
from rq import SimpleWorker

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _force_login_passes_staff_mfa(monkeypatch):
    """`client.force_login(staff)` stands for a complete login: for a staff user with an
    authenticator app it also records the second factor in the session, as allauth does after a
    TOTP code. `force_login(user, mfa=False)` is a session that skipped it (tests of that rule)."""
    from allauth.account.internal.flows.login import (
        _AUTHENTICATION_METHODS_USER_SESSION_KEY,
        AUTHENTICATION_METHODS_SESSION_KEY,
    )
    from allauth.mfa.models import Authenticator
    from django.test import Client

    original = Client.force_login

    def force_login(self, user, backend=None, mfa=True):
        original(self, user, backend)
        if mfa and user.is_staff and Authenticator.objects.filter(user=user).exists():
            session = self.session
            now = time.time()
            session[AUTHENTICATION_METHODS_SESSION_KEY] = [
                {"method": "password", "at": now},
                {"method": "mfa", "at": now, "type": "totp"},
            ]
            session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
            session.save()

    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture(autouse=True)
def _clean_redis():
    """The test Redis is private to the run: start each test with no jobs, cache or rate limits."""
    django_rq.get_connection("default").flushdb()
    yield


@pytest.fixture(autouse=True)
def _clean_cache_and_outbox_state():
    """The cache (rate limits, used TOTP codes) is a database table that transactional tests do
    not roll back: start each database test with it empty. A Redis failure in an earlier test
    does not pause this test's outbox sends."""
    from django.core.cache import cache

    from portal.outbox import _forget_failure

    _forget_failure()
    try:
        cache.clear()
    except RuntimeError:  # a test without database access
        pass
    yield


DB_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences", "django_db_serialized_rollback"}


@pytest.fixture(autouse=True)
def _gpu_models(request):
    """The GPU models the data migration inserts exist in every database test: a transactional
    test's flush empties every table, the migration's rows included. No label of an earlier
    test's GPU models survives in the per-process label table."""
    from allocations.gpu_models import forget_labels

    forget_labels()
    if not (DB_FIXTURES & set(request.fixturenames) or request.node.get_closest_marker("django_db")):
        yield
        return
    request.getfixturevalue("_django_db_helper")
    ensure_gpu_models()
    yield
    forget_labels()


def ensure_gpu_models() -> None:
    import importlib

    from allocations.models import GpuModel

    known = importlib.import_module("allocations.migrations.0013_gpu_models_as_rows").KNOWN
    if GpuModel.objects.filter(pk__in=[k[0] for k in known]).count() < len(known):
        GpuModel.objects.bulk_create(
            [GpuModel(code=c, name=n, memory_gib=m, nvml_names=nvml) for c, n, m, nvml in known],
            ignore_conflicts=True,
        )


class Jobs:
    """Runs the queued background jobs in this process (SimpleWorker: no fork), so they see the
    test's database transaction and Django's test mail outbox."""

    def __init__(self, capture) -> None:
        self._capture = capture

    def committed(self):
        """A block whose on-commit callbacks (RQ enqueues among them) run at its end."""
        return self._capture(execute=True)

    def run(self, queue: str | None = None) -> int:
        """Run one queue, or every queue of settings.RQ_QUEUES in the workers' order."""
        queues = [django_rq.get_queue(name) for name in ([queue] if queue else settings.RQ_QUEUES)]
        count = sum(q.count for q in queues)
        SimpleWorker(queues, connection=queues[0].connection).work(burst=True)
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
