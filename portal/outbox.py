"""Jobs and e-mails leave through the outbox (portal.models.OutboxMessage).

`outbox_enqueue` is called inside the transaction of a change: the row commits or rolls back
with it. After commit the message is sent to RQ at once when Redis answers; when it does not,
the request still succeeds and `outbox_drain` (every minute from `portal.cron`, or
`manage.py outbox_drain`) sends it later. Each row is sent under a row lock taken with
SKIP LOCKED and marked sent in that same transaction, so two drainers never send one row twice.
Jobs must still be harmless when run twice: a process killed between the RQ push and the
commit leaves the row unsent, and the next drain sends it again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import django_rq
from django.core.signals import request_started
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from portal.models import OutboxMessage

log = logging.getLogger(__name__)
BATCH = 500
# After Redis failed once, the sends after commit of the same request (or, outside requests, of
# the next minute in this thread) are not tried: a hung Redis costs seconds per message, and a
# request holding a committed change must return. The drain sends them.
FAILED_SEND_PAUSE_SECONDS = 60
_state = threading.local()


def _forget_failure(**kwargs: Any) -> None:
    _state.failed_at = None


request_started.connect(_forget_failure, dispatch_uid="portal.outbox.forget_failure")


def outbox_enqueue(func_path: str, *args: Any, queue: str = "default") -> OutboxMessage:
    """Record a job (dotted path + JSON arguments) in the current transaction, and try to send it
    right after commit; a rolled-back transaction sends nothing."""
    message = OutboxMessage.objects.create(func=func_path, args=list(args), queue=queue)
    transaction.on_commit(lambda: _send_quietly(message.pk))
    return message


def _send_quietly(pk: int) -> None:
    """The attempt right after commit: never raises, since the change is already committed and
    the user must see it succeed. A failure leaves the row for the next drain, and the further
    messages of this request for it too, untried."""
    failed_at = getattr(_state, "failed_at", None)
    if failed_at is not None and time.monotonic() - failed_at < FAILED_SEND_PAUSE_SECONDS:
        OutboxMessage.objects.filter(pk=pk, sent_at=None).update(
            attempts=F("attempts") + 1, last_error="not tried: Redis failed just before"
        )
        return
    try:
        outcome = outbox_send(pk)
    except Exception:
        log.exception("outbox: sending message %s after commit failed", pk)
        outcome = False
    if outcome is False:
        _state.failed_at = time.monotonic()


def outbox_send(pk: int) -> bool | None:
    """Send one unsent message to RQ. Returns True when sent, False when Redis refused it (the
    error is stored on the row), None when there was nothing to do (already sent, or another
    drainer holds it)."""
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update(skip_locked=True).filter(pk=pk, sent_at=None).first()
        if message is None:
            return None
        try:
            # commit_mode="auto": push now, while the row is locked, not on this block's commit.
            django_rq.get_queue(message.queue, commit_mode="auto").enqueue(message.func, *message.args)
        except Exception as exc:  # noqa: BLE001 - Redis down, timeouts, refused connections
            OutboxMessage.objects.filter(pk=pk).update(
                attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000]
            )
            log.warning("outbox: message %s not sent: %s", pk, exc)
            return False
        OutboxMessage.objects.filter(pk=pk).update(sent_at=timezone.now(), attempts=F("attempts") + 1, last_error="")
        return True


def outbox_drain() -> int:
    """Send every unsent message, oldest first; stop at the first refusal (Redis is still down).
    Returns how many were sent."""
    sent, last = 0, 0
    while True:
        pks = list(
            OutboxMessage.objects.filter(sent_at=None, pk__gt=last).order_by("pk").values_list("pk", flat=True)[:BATCH]
        )
        if not pks:
            return sent
        for pk in pks:
            outcome = outbox_send(pk)
            if outcome is False:
                return sent
            sent += outcome is True
        last = pks[-1]


def outbox_backlog() -> int:
    return OutboxMessage.objects.filter(sent_at=None).count()


def outbox_prune(*, days: int = 7) -> int:
    """Delete rows sent more than `days` ago: e-mail rows hold whole messages, password-reset
    and confirmation links among them, which must not stay in the database."""
    deleted, _ = OutboxMessage.objects.filter(sent_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
