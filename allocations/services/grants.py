"""Grant lifecycle: placement, provisioning, suspension, expiry, revocation, reconciliation.

Each transition follows Grant.ALLOWED on a locked row and writes a GrantEvent. Remote work is
described as ProvisioningTask rows and run by `node_tasks_job` after commit, so a rolled-back
decision never touches a node.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from allocations.models import (
    AccessInterval,
    Assignment,
    Grant,
    GrantEvent,
    JupyterSession,
    Node,
    NodeAccount,
    ProvisioningTask,
    SshKey,
)
from allocations.services import jupyter as jupyter_services
from allocations.services.accounts import account_set_state
from allocations.services.enqueue import enqueue_node, enqueue_provision
from allocations.services.nodes import connect
from allocations.services.placement import grant_place, grant_release_gpus
from allocations.services.provisioning import grant_round_tasks, task_create, tasks_supersede
from allocations.services.unix_ids import grant_label, unix_uid_for
from portal.errors import PortalError

G = Grant.Status
K = ProvisioningTask.Kind
log = logging.getLogger(__name__)


@transaction.atomic
def grant_create(
    *,
    application,
    actor,
    gpu_model: str,
    gpu_count: int,
    gpu_hours: int,
    starts_on,
    ends_on,
    budget_override_reason: str = "",
) -> Grant:
    """The award of an approved application, created `pending` with its first GrantEvent; its
    placement and provisioning are queued after commit. The caller (`application_approve`)
    holds the call's budget lock and has checked the award against it."""
    grant = Grant.objects.create(
        organisation=application.organisation,
        application=application,
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        gpu_hours=gpu_hours,
        copay_percent=application.call.copay_percent,
        past_subsidy=application.call.past_subsidy,
        starts_on=starts_on,
        ends_on=ends_on,
        budget_override_reason=budget_override_reason,
    )
    GrantEvent.objects.create(grant=grant, actor=actor, old_status="", new_status=grant.status)
    enqueue_provision(grant.pk)
    return grant


def _transition(grant: Grant, new: str, *, actor=None, reason: str = "") -> Grant:
    if not grant.can_transition(new):
        raise PortalError(
            _("The grant is “%(status)s”; that action is no longer possible.") % {"status": grant.get_status_display()},
            code="bad_transition",
        )
    old = grant.status
    grant.status = new
    grant.status_reason = reason
    grant.save(update_fields=["status", "status_reason"])
    event = GrantEvent.objects.create(grant=grant, actor=actor, old_status=old, new_status=new, reason=reason)
    _record_access(grant, old, new, at=event.created_at)
    return grant


def _record_access(grant: Grant, old: str, new: str, *, at) -> None:
    """Access opens when the grant becomes active and closes when it leaves `active`, at the
    instant of the transition: the intervals are the billing basis, so they are written here,
    in the transition's transaction, and never reconstructed later."""
    if new == G.ACTIVE:
        if not grant.access_intervals.filter(closed_at__isnull=True).exists():
            AccessInterval.objects.create(grant=grant, gpu_count=grant.gpu_count, opened_at=at)
    elif old == G.ACTIVE:
        grant.access_intervals.filter(closed_at__isnull=True).update(closed_at=at, close_reason=new)


def _lock(grant: Grant) -> Grant:
    return Grant.objects.select_for_update().get(pk=grant.pk)


# -- what a user should have on a node --------------------------------------------------------


def account_username(user) -> str:
    return f"{settings.NODE_ACCOUNT_PREFIX}{user.pk}"


def authorized_keys(user) -> list[str]:
    return list(SshKey.objects.filter(user=user).order_by("created_at").values_list("public_key", flat=True))


def keys_sha256(lines: list[str]) -> str | None:
    content = "".join(line + "\n" for line in lines)
    return hashlib.sha256(content.encode()).hexdigest()


LIVE = (G.PROVISIONING, G.ACTIVE)


def member_gpu_ids(user, node: Node) -> list[str]:
    """Every GPU the user may use on the node: the union over their live grants there (two
    grants on one node must not hide each other's GPUs)."""
    live = Grant.objects.filter(status__in=LIVE).of_member(user).values("pk")
    current = models.Q(period__upper_inf=True) | models.Q(period__endswith__gt=timezone.now())
    rows = (
        Assignment.objects.filter(current, grant__in=live, node=node)
        .order_by("gpu__index")
        .values_list("gpu__uuid", flat=True)
        .distinct()
    )
    return list(dict.fromkeys(rows))


def account_payload(account: NodeAccount, expires_on) -> dict:
    return {"username": account.username, "uid": unix_uid_for(account.user), "expires_on": expires_on.isoformat()}


def queue_grant_gpus(grant: Grant, node: Node, accounts: list[NodeAccount]) -> None:
    """The grant's GPUs' device files let in exactly its members' uids (a per-uid ACL)."""
    task_create(
        node=node, grant=grant, kind=K.GRANT_GPUS,
        payload={"grant": grant_label(grant), "gpus": grant.gpu_uuids(),
                 "members": sorted(a.username for a in accounts)},
    )  # fmt: skip


def ensure_account(user, node: Node, expires_on) -> NodeAccount:
    account, _created = NodeAccount.objects.get_or_create(
        user=user, node=node, defaults={"username": account_username(user)}
    )
    if account.expires_on is None or account.expires_on < expires_on or account.state == NodeAccount.State.REVOKED:
        account = account_set_state(
            account=account,
            state=NodeAccount.State.WANTED if account.state == NodeAccount.State.REVOKED else account.state,
            reason="access granted again",
            expires_on=max(expires_on, account.expires_on or expires_on),
        )
    return account


def _provision_tasks(grant: Grant, node: Node) -> None:
    """Queue every step that gives the grant's members their access on the node."""
    expires_on = grant.ends_on + timedelta(days=settings.ACCOUNT_GRACE_DAYS)
    gpus = grant.gpu_uuids()
    accounts = []
    for user in grant.members():
        account = ensure_account(user, node, expires_on)
        accounts.append(account)
        task_create(node=node, grant=grant, account=account, kind=K.ENSURE_ACCOUNT,
                    payload=account_payload(account, account.expires_on))  # fmt: skip
    queue_grant_gpus(grant, node, accounts)
    for account in accounts:
        name = account.username
        task_create(node=node, grant=grant, account=account, kind=K.SET_KEYS,
                    payload={"username": name, "keys": authorized_keys(account.user)})  # fmt: skip
        task_create(node=node, grant=grant, account=account, kind=K.SET_GPUS,
                    payload={"username": name, "gpus": member_gpu_ids(account.user, node)})  # fmt: skip
    for account in accounts:  # each member their own JupyterLab, under their own account
        jupyter_services.session_queue_start(session=jupyter_services.session_for(grant, account), gpus=gpus)


# -- lifecycle --------------------------------------------------------------------------------


@transaction.atomic
def grant_provision(*, grant: Grant) -> Grant:
    """Place a pending grant and queue its provisioning; a grant without room stays pending
    with the reason, and `grants_place_pending_job` tries again when capacity frees up."""
    grant = _lock(grant)
    if grant.status != G.PENDING:
        return grant
    if grant.ends_on < timezone.localdate():
        return _transition(grant, G.REVOKED, reason="the grant ended before it could be placed")
    assignments = grant_place(grant=grant)
    if not assignments:
        grant.refresh_from_db()
        return grant
    node = assignments[0].node
    if grant.starts_on > timezone.localdate():
        # GPUs are reserved now; access opens on the first day (grants_place_pending_job).
        Grant.objects.filter(pk=grant.pk).update(
            status_reason=f"GPUs reserved on {node.hostname}; access opens on {grant.starts_on}."
        )
        grant.refresh_from_db()
        return grant
    _transition(grant, G.PROVISIONING, reason=f"placed on {node.hostname}")
    _provision_tasks(grant, node)
    enqueue_node(node.pk)
    return grant


def grant_after_tasks(*, grant_id: int) -> Grant:
    """Activate a provisioning grant once every one of its tasks succeeded."""
    with transaction.atomic():
        grant = Grant.objects.select_for_update().get(pk=grant_id)
        if grant.status != G.PROVISIONING:
            return grant
        # Only this round of provisioning counts: a resumed grant keeps the tasks its
        # suspension superseded (failed) from earlier rounds.
        current = grant_round_tasks(grant)
        failed = current.filter(state=ProvisioningTask.State.FAILED).first()
        if failed:
            with translation.override("en"):  # stored English, shown translated (allocations.reasons)
                step = str(failed.get_kind_display())
            Grant.objects.filter(pk=grant.pk).update(status_reason=f"{step} failed: {failed.last_error}"[:2000])
            return grant
        if grant.tasks.filter(state__in=ProvisioningTask.OPEN).exists():
            return grant
        return _transition(grant, G.ACTIVE, reason="access is ready")


def _revoke_tasks(grant: Grant) -> set[int]:
    """Queue revocation on every node the grant used, except for accounts another live grant
    still needs there. Returns the node ids."""
    nodes = set()
    # Anything still queued to give access would undo the revocation.
    tasks_supersede(
        tasks=grant.tasks.filter(kind__in=[K.ENSURE_ACCOUNT, K.SET_KEYS, K.SET_GPUS, K.GRANT_GPUS, K.START_JUPYTER]),
        reason="superseded by revocation",
    )
    for session in grant.jupyter_sessions.exclude(state=JupyterSession.State.STOPPED).select_related("account"):
        jupyter_services.session_queue_stop(session=session)
        nodes.add(session.node_id)
    node_ids = set(grant.assignments.values_list("node_id", flat=True)) | set(
        grant.tasks.values_list("node_id", flat=True)
    )
    # The device files first: from here on the grant's GPUs are closed to its members (by uid),
    # whatever their processes or other grants keep.
    for node in Node.objects.filter(pk__in=set(grant.assignments.values_list("node_id", flat=True))):
        task_create(node=node, grant=grant, kind=K.RELEASE_GPUS,
                    payload={"grant": grant_label(grant), "gpus": grant.gpu_uuids()})  # fmt: skip
        nodes.add(node.pk)
    live = Grant.objects.filter(status__in=LIVE).exclude(pk=grant.pk)
    for user in grant.members():
        for account in NodeAccount.objects.filter(user=user, node_id__in=node_ids).select_related("node", "user"):
            if live.of_member(user).filter(assignments__node=account.node).exists():
                # Another grant keeps the account: only this grant's GPUs leave its environment.
                gpus = member_gpu_ids(user, account.node)
                task_create(node=account.node, grant=grant, account=account, kind=K.SET_GPUS,
                            payload={"username": account.username, "gpus": gpus})  # fmt: skip
                nodes.add(account.node_id)
                continue
            task_create(node=account.node, grant=grant, account=account, kind=K.REVOKE,
                        payload={"username": account.username})  # fmt: skip
            nodes.add(account.node_id)
    return nodes


def _end(grant: Grant, new: str, *, actor, reason: str) -> Grant:
    grant = _lock(grant)
    _transition(grant, new, actor=actor, reason=reason)
    if new != G.SUSPENDED:
        grant_release_gpus(grant=grant)
    for node_id in _revoke_tasks(grant):
        enqueue_node(node_id)
    return grant


@transaction.atomic
def grant_suspend(*, grant: Grant, actor, reason: str) -> Grant:
    return _end(grant, G.SUSPENDED, actor=actor, reason=reason)


@transaction.atomic
def grant_revoke(*, grant: Grant, actor, reason: str) -> Grant:
    return _end(grant, G.REVOKED, actor=actor, reason=reason)


# A grant in one of these states has (or is being given) access that must end with the grant.
EXPIRABLE = frozenset({G.PROVISIONING, G.ACTIVE, G.SUSPENDED})


@transaction.atomic
def grant_expire(*, grant: Grant) -> Grant:
    """End the grant: free its GPUs and revoke whatever was (or was about to be) provisioned.
    A grant another run already ended is left as it is."""
    grant = _lock(grant)
    if grant.status not in EXPIRABLE:
        return grant
    return _end(grant, G.EXPIRED, actor=None, reason="the grant period ended")


@transaction.atomic
def grant_resume(*, grant: Grant, actor) -> Grant:
    """Give a suspended grant its access back. It goes through provisioning like a new grant
    and becomes active only when every task succeeded (grant_after_tasks)."""
    grant = _lock(grant)
    _transition(grant, G.PROVISIONING, actor=actor, reason="resumed")
    node = grant.assignments.select_related("node").first().node
    _provision_tasks(grant, node)
    enqueue_node(node.pk)
    return grant


def grants_expire_due(*, today=None) -> list[int]:
    """Grants whose last day has passed: revoke access (account expiry dates only stop new logins).

    Each grant is expired in its own transaction: one that fails keeps the error in its
    status_reason and the others still lose their access on time."""
    today = today or timezone.localdate()
    expired = []
    due = Grant.objects.filter(status__in=EXPIRABLE, ends_on__lt=today).order_by("ends_on", "pk")
    for grant_id in list(due.values_list("pk", flat=True)):
        try:
            grant = grant_expire(grant=Grant(pk=grant_id))
        except Exception as exc:  # recorded on the grant; the next grant must still expire
            log.exception("grant %s: expiry failed", grant_id)
            Grant.objects.filter(pk=grant_id).update(status_reason=f"expiry failed: {exc}"[:2000])
            continue
        if grant.status == G.EXPIRED:
            expired.append(grant_id)
    return expired


def keys_changed(*, user) -> set[int]:
    """Push the user's current keys to every node where they have an active account."""
    nodes = set()
    lines = authorized_keys(user)
    live = Grant.objects.filter(status=G.ACTIVE)
    for account in NodeAccount.objects.filter(user=user, state=NodeAccount.State.ACTIVE).select_related("node"):
        grant = live.of_member(user).filter(assignments__node=account.node).first()
        if grant is None:
            continue
        task_create(node=account.node, grant=grant, account=account, kind=K.SET_KEYS,
                    payload={"username": account.username, "keys": lines})  # fmt: skip
        nodes.add(account.node_id)
    for node_id in nodes:
        enqueue_node(node_id)
    return nodes


# -- reconciliation ---------------------------------------------------------------------------


def reconcile_node(*, node: Node) -> list[ProvisioningTask]:
    """Compare what the database wants with what the node's `status` reports and queue the
    repairs: a revoked user still able to log in, a missing or stale key, a dead Jupyter."""
    accounts = list(NodeAccount.objects.filter(node=node).select_related("user"))
    if not accounts:
        return []
    live = Grant.objects.filter(status=G.ACTIVE, assignments__node=node).distinct()
    # Grants still being provisioned here: their own tasks are giving their members access, so
    # reconcile must not take it away (it revoked them when it ran mid-provisioning).
    arriving = Grant.objects.filter(status=G.PROVISIONING, assignments__node=node).distinct()
    members_of = {g.pk: sorted(a.username for a in accounts if a.user in g.members()) for g in live}
    wanted = {grant_label(g): {"gpus": g.gpu_uuids(), "members": members_of[g.pk]} for g in live}
    with connect(node) as conn:
        answer = conn.agent("status", {"usernames": [a.username for a in accounts], "grants": wanted})
    report, grant_report = answer["accounts"], answer.get("grants", {})
    created = []
    with transaction.atomic():
        open_kinds = set(node.tasks.filter(state__in=ProvisioningTask.OPEN).values_list("account_id", "kind"))
        open_gpu_tasks = set(
            node.tasks.filter(state__in=ProvisioningTask.OPEN, kind=K.GRANT_GPUS).values_list("grant_id", flat=True)
        )

        def queue(account, kind, payload, grant=None):
            if (account.pk, kind) not in open_kinds:
                created.append(task_create(node=node, grant=grant, account=account, kind=kind, payload=payload))

        # In the order a first provisioning runs them: accounts, the grants' GPU access (ACLs of
        # existing accounts), then keys, CUDA_VISIBLE_DEVICES and Jupyter. A node that lost
        # everything (reinstalled, or `make clean-demo`) is rebuilt: GPU access ahead of a missing
        # account would leave that member out.
        wanted, recreated = [], set()
        for account in accounts:
            seen = report.get(account.username, {"exists": False})
            grant = live.of_member(account.user).first()
            if grant is None or account.state == NodeAccount.State.REVOKED:
                if account.state != NodeAccount.State.REVOKED and arriving.of_member(account.user).exists():
                    continue
                if seen.get("exists") and (not seen.get("locked") or seen.get("keys_sha256") or seen.get("processes")):
                    queue(account, K.REVOKE, {"username": account.username})
                continue
            expires_on = account.expires_on or grant.ends_on + timedelta(days=settings.ACCOUNT_GRACE_DAYS)
            if not seen.get("exists") or seen.get("locked"):
                queue(account, K.ENSURE_ACCOUNT, account_payload(account, expires_on), grant)
                recreated.add(account.username)
            wanted.append((account, grant, seen))
        for grant in live:
            # devices_ok: each GPU is held by this grant and its ACL is exactly the uids of the
            # members whose account exists on the node; an account made again above is not in
            # that ACL yet.
            ok = grant_report.get(grant_label(grant), {}).get("devices_ok")
            ok = ok and not recreated & set(members_of[grant.pk])
            if grant.pk not in open_gpu_tasks and not ok:
                queue_grant_gpus(grant, node, [a for a in accounts if a.username in members_of[grant.pk]])
                created.append(node.tasks.latest("pk"))
        for account, grant, seen in wanted:
            lines = authorized_keys(account.user)
            if seen.get("keys_sha256") != (keys_sha256(lines) if lines else None):
                queue(account, K.SET_KEYS, {"username": account.username, "keys": lines}, grant)
            visible = member_gpu_ids(account.user, node)
            if seen.get("cuda_visible_devices") != ",".join(visible):
                queue(account, K.SET_GPUS, {"username": account.username, "gpus": visible}, grant)
            if (account.pk, K.START_JUPYTER) not in open_kinds:
                created += jupyter_services.jupyter_repairs(
                    account=account, grants=live.of_member(account.user), seen=seen.get("jupyter", {}),
                    gpus_of=Grant.gpu_uuids,
                )  # fmt: skip
    Node.objects.filter(pk=node.pk).update(last_report_at=timezone.now())
    if created:
        enqueue_node(node.pk)
    return created
