"""Provisioning tasks: every remote action is a row, run in order per node over one SSH
connection, at most one runner per node (a PostgreSQL advisory lock, released by the server if
the worker dies). Transient failures wait and retry with backoff; permanent ones fail at once
and stay visible with their error until an operator retries them.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from allocations import ssh
from allocations.models import Grant, GrantEvent, Node, NodeAccount, ProvisioningTask
from allocations.services.accounts import account_set_state
from allocations.services.jupyter import agent_payload, jupyter_after_task
from allocations.services.node_status import node_report_reachable, node_report_unreachable
from allocations.services.nodes import connect

log = logging.getLogger(__name__)
T = ProvisioningTask.State
LOCK_NAMESPACE = 0x6770  # "gp": advisory lock keys are (namespace, node id)


@contextmanager
def node_lock(node_id: int):
    """Yield True when this process holds the node's lock (no other runner), else False."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, node_id])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, node_id])


def task_create(*, node: Node, kind: str, payload: dict, grant=None, account=None) -> ProvisioningTask:
    return ProvisioningTask.objects.create(node=node, kind=kind, payload=payload, grant=grant, account=account)


def _set_state(task: ProvisioningTask, new: str, **fields) -> bool:
    """The one writer of a task's state: checks ALLOWED and writes only if the row is still in
    the state this process read (a guarded update). False when someone else changed it first,
    e.g. a revocation superseded the task while it ran; the caller then leaves it alone."""
    if new not in ProvisioningTask.ALLOWED[task.state]:
        raise ValueError(f"task {task.pk}: {task.state} → {new} is not allowed")
    if ProvisioningTask.objects.filter(pk=task.pk, state=task.state).update(state=new, **fields) != 1:
        task.refresh_from_db()
        return False
    task.state = new
    for key, value in fields.items():
        setattr(task, key, value)
    return True


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=settings.PROVISIONING_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0))


def runnable_tasks(node: Node):
    """Open tasks in order. A task left `running` by a killed worker is runnable again: we hold
    the node lock, so nobody else is running it."""
    return node.tasks.filter(state__in=ProvisioningTask.OPEN).order_by("created_at", "pk")


def grant_round_tasks(grant: Grant) -> QuerySet[ProvisioningTask]:
    """The tasks of the grant's current round: those created since the latest event that started
    provisioning it (its placement, or its latest resumption). A resumed grant keeps the tasks of
    its earlier rounds (the first provisioning, the suspension's revocation, runs it superseded)
    for the operators; they say nothing about the access it is being given now. A grant that
    never started provisioning has no round yet: all its tasks. One query wherever it is used."""
    started = (
        GrantEvent.objects.filter(grant=OuterRef("grant"), new_status=Grant.Status.PROVISIONING)
        .order_by("-created_at", "-pk")
        .values("created_at")[:1]
    )
    never_started = ~Exists(GrantEvent.objects.filter(grant=grant, new_status=Grant.Status.PROVISIONING))
    return grant.tasks.filter(Q(created_at__gte=Subquery(started)) | never_started)


def grant_steps(*, grant: Grant) -> list[ProvisioningTask]:
    """The grant's provisioning steps as its members follow them: the steps of its current round
    (grant_round_tasks: after a suspension and a resumption, the resumption's steps, not the
    suspension's), each step (an action for one account, or for the grant, on one node) once, as
    its latest run. A node rebuilt or brought back in line (`make clean-demo` then `make run`, a
    reinstalled node, a key change) runs the same steps again as new tasks; the old, finished
    runs stay for the operators (admin → Provisioning tasks) but are not listed twice. Steps keep
    the order they first ran in within the round."""
    latest: dict[tuple[int, int | None, str], ProvisioningTask] = {}
    for task in grant_round_tasks(grant).select_related("account").order_by("created_at", "pk"):  # one query
        latest[(task.node_id, task.account_id, task.kind)] = task  # a key keeps its first position
    return list(latest.values())


def node_run_tasks(*, node_id: int) -> dict:
    """Run the node's open tasks. Returns {"ran": n, "retry_in": seconds or None, "busy": bool}."""
    with node_lock(node_id) as acquired:
        if not acquired:
            return {"ran": 0, "retry_in": 5, "busy": True}
        return _run_locked(Node.objects.get(pk=node_id))


def _fail_open_tasks(node: Node, error: str) -> None:
    now = timezone.now()
    for task in runnable_tasks(node):
        _set_state(task, T.FAILED, last_error=error, finished_at=now)


def _run_locked(node: Node) -> dict:
    tasks = list(runnable_tasks(node))
    if not tasks:
        return {"ran": 0, "retry_in": None, "busy": False}
    now = timezone.now()
    due = [t for t in tasks if t.next_attempt_at is None or t.next_attempt_at <= now]
    if not due:
        wait = min(t.next_attempt_at for t in tasks) - now
        return {"ran": 0, "retry_in": max(int(wait.total_seconds()), 1), "busy": False}
    ran = 0
    try:
        conn = connect(node)
    except ssh.SshError as exc:
        return _handle_failure(node, tasks[0], exc)
    blocked_grants: set[int] = set()
    with conn:
        for task in tasks:
            if task.next_attempt_at and task.next_attempt_at > timezone.now():
                break  # keep the order: later tasks may depend on this one
            if task.grant_id in blocked_grants and not takes_access_away(task):
                _set_state(
                    task, T.FAILED, last_error="an earlier task of this grant failed", finished_at=timezone.now()
                )
                continue
            task.refresh_from_db()
            if task.state not in ProvisioningTask.OPEN:
                continue
            if not _set_state(task, T.RUNNING, attempts=task.attempts + 1, started_at=timezone.now()):
                continue
            try:
                result = conn.agent(task.kind, agent_payload(task))
            except ssh.SshError as exc:
                if not exc.permanent:
                    return _handle_failure(node, task, exc, ran=ran)
                _set_state(task, T.FAILED, last_error=exc.message, finished_at=timezone.now())
                if task.grant_id:
                    blocked_grants.add(task.grant_id)
                if exc.code in {"host_key_mismatch", "auth", "agent_missing"}:
                    _fail_open_tasks(node, exc.message)
                    _node_unhealthy(node, exc.message)
                    break
                continue
            with transaction.atomic():
                if not _set_state(task, T.SUCCEEDED, result=result, last_error="", finished_at=timezone.now()):
                    continue  # superseded while it ran: the revocation queued after it undoes it
                _after_success(task, result)
            ran += 1
    if not blocked_grants:
        node_report_reachable(node=node)  # only undoes an offline caused by the connection
    waiting = runnable_tasks(node).filter(next_attempt_at__gt=timezone.now()).order_by("next_attempt_at").first()
    retry_in = max(int((waiting.next_attempt_at - timezone.now()).total_seconds()), 1) if waiting else None
    return {"ran": ran, "retry_in": retry_in, "busy": False}


# Tasks that only ever close things: an earlier failure of the grant (a member's account that
# could not be made, a user's trick in their home) must never keep them from running.
# grant-gpus sets each GPU's ACL to exactly the grant's current members, skipping accounts that
# do not exist, so it never opens a GPU to someone who should not have it either.
CLOSING_KINDS = frozenset(
    {
        ProvisioningTask.Kind.STOP_JUPYTER,
        ProvisioningTask.Kind.RELEASE_GPUS,
        ProvisioningTask.Kind.REVOKE,
        ProvisioningTask.Kind.GRANT_GPUS,
    }
)


def takes_access_away(task: ProvisioningTask) -> bool:
    """Whether the task only narrows access: a closing kind, or a set-gpus of an account whose
    user is no longer a member of the task's live grant (its GPUs leave their environment)."""
    if task.kind in CLOSING_KINDS:
        return True
    if task.kind != ProvisioningTask.Kind.SET_GPUS or task.grant is None or task.account is None:
        return False
    grant = task.grant
    return grant.status not in (Grant.Status.PROVISIONING, Grant.Status.ACTIVE) or task.account.user not in (
        grant.members()
    )


def _node_unhealthy(node: Node, reason: str) -> None:
    node_report_unreachable(node=node, reason=reason)


def _handle_failure(node: Node, task: ProvisioningTask, exc: ssh.SshError, ran: int = 0) -> dict:
    task.refresh_from_db()
    if task.state != T.RUNNING:  # the connection failed before the task itself started
        _set_state(task, T.RUNNING, attempts=task.attempts + 1, started_at=timezone.now())
    if exc.permanent:
        _fail_open_tasks(node, exc.message)
        _node_unhealthy(node, exc.message)
        return {"ran": ran, "retry_in": None, "busy": False}
    if task.attempts >= settings.PROVISIONING_MAX_ATTEMPTS:
        error = f"gave up after {task.attempts} attempts: {exc.message}"
        _set_state(task, T.FAILED, last_error=error, finished_at=timezone.now())
        _node_unhealthy(node, exc.message)
        return {"ran": ran, "retry_in": None, "busy": False}
    delay = backoff(task.attempts)
    _set_state(task, T.RETRYING, last_error=exc.message, next_attempt_at=timezone.now() + delay)
    log.warning("node %s: %s failed (%s), retrying in %s", node.hostname, task.kind, exc.message, delay)
    return {"ran": ran, "retry_in": int(delay.total_seconds()), "busy": False}


def _after_success(task: ProvisioningTask, result: dict) -> None:
    """Record what the node now has, beside the task."""
    if task.account_id and task.kind == ProvisioningTask.Kind.ENSURE_ACCOUNT:
        account_set_state(account=task.account, state=NodeAccount.State.ACTIVE, reason="account created", task=task)
    elif task.account_id and task.kind == ProvisioningTask.Kind.REVOKE:
        account_set_state(account=task.account, state=NodeAccount.State.REVOKED, reason="access revoked", task=task)
    elif task.kind in {ProvisioningTask.Kind.START_JUPYTER, ProvisioningTask.Kind.STOP_JUPYTER}:
        jupyter_after_task(task, result)


@transaction.atomic
def task_retry(*, task: ProvisioningTask) -> ProvisioningTask:
    """An operator's retry of a failed or waiting task: queue it now. A provisioning grant's
    failure note is cleared, since its provisioning is under way again."""
    task = ProvisioningTask.objects.select_for_update().get(pk=task.pk)
    if task.state in {T.FAILED, T.RETRYING}:
        _set_state(task, T.QUEUED, next_attempt_at=None)
        Grant.objects.filter(pk=task.grant_id, status=Grant.Status.PROVISIONING).update(status_reason="")
    return task


def tasks_supersede(*, tasks: QuerySet[ProvisioningTask], reason: str) -> int:
    """Fail open tasks that must not run any more (a revocation supersedes what would give
    access), each through the transition table. Returns how many."""
    now = timezone.now()
    superseded = 0
    for task in tasks.filter(state__in=ProvisioningTask.OPEN).select_for_update():
        _set_state(task, T.FAILED, last_error=reason, finished_at=now)
        superseded += 1
    return superseded
