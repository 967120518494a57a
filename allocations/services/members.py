"""Members joining or leaving a live grant: a member who leaves the organisation (removed or on
their own) loses node access through the same REVOKE path as a grant's end; a member who becomes
the principal investigator of a running grant gets their account, keys and GPUs there."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from allocations.models import Grant, JupyterSession, NodeAccount, ProvisioningTask
from allocations.services.grants import _ensure_account, authorized_keys, enqueue_node, grant_gpu_ids
from allocations.services.provisioning import task_create

G = Grant.Status
K = ProvisioningTask.Kind
# Grants whose members hold (or are being given) node access.
LIVE = frozenset({G.PENDING, G.PROVISIONING, G.ACTIVE, G.SUSPENDED})


@transaction.atomic
def grant_member_removed(*, grant: Grant, user) -> set[int]:
    """Queue REVOKE for `user`'s accounts on the grant's nodes, unless another live grant of an
    organisation they still belong to needs the account there. Open tasks that would give this
    user access for this grant are cancelled first, so nothing undoes the revocation. Call it
    after the membership is gone (Grant.of_member then no longer counts this grant). Returns
    the node ids that got work."""
    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    node_ids = set(grant.assignments.values_list("node_id", flat=True)) | set(
        grant.tasks.values_list("node_id", flat=True)
    )
    accounts = list(NodeAccount.objects.filter(user=user, node_id__in=node_ids).select_related("node"))
    grant.tasks.filter(
        account__in=accounts,
        state__in=ProvisioningTask.OPEN,
        kind__in=[K.ENSURE_ACCOUNT, K.SET_KEYS, K.SET_GPUS, K.START_JUPYTER],
    ).update(state=ProvisioningTask.State.FAILED, last_error="superseded: member left", finished_at=timezone.now())
    still_needed = Grant.objects.filter(status__in=[G.PROVISIONING, G.ACTIVE]).exclude(pk=grant.pk).of_member(user)
    nodes: set[int] = set()
    for account in accounts:
        if still_needed.filter(assignments__node=account.node).exists():
            continue
        for session in grant.jupyter_sessions.filter(account=account).exclude(state=JupyterSession.State.STOPPED):
            task_create(node=account.node, grant=grant, account=account, kind=K.STOP_JUPYTER,
                        payload={"username": account.username, "_meta": {"session": session.pk}})  # fmt: skip
        task_create(node=account.node, grant=grant, account=account, kind=K.REVOKE,
                    payload={"username": account.username})  # fmt: skip
        nodes.add(account.node_id)
    for node_id in nodes:
        enqueue_node(node_id)
    return nodes


def organisation_member_removed(*, organisation, user) -> set[int]:
    """Every live grant of the organisation loses the user (see grant_member_removed)."""
    nodes: set[int] = set()
    for grant in Grant.objects.filter(organisation=organisation, status__in=LIVE):
        nodes |= grant_member_removed(grant=grant, user=user)
    return nodes


@transaction.atomic
def grant_member_added(*, grant: Grant, user) -> set[int]:
    """Give a current member of a provisioning or active grant their account, keys and GPUs on the
    grant's node (all idempotent verbs). Nothing for other states: placement and resumption
    provision every member then."""
    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    if grant.status not in (G.PROVISIONING, G.ACTIVE) or user not in grant.members():
        return set()
    assignment = grant.assignments.select_related("node").first()
    if assignment is None:
        return set()
    node = assignment.node
    expires_on = grant.ends_on + timedelta(days=settings.ACCOUNT_GRACE_DAYS)
    account = _ensure_account(user, node, expires_on)
    name = account.username
    task_create(node=node, grant=grant, account=account, kind=K.ENSURE_ACCOUNT,
                payload={"username": name, "expires_on": expires_on.isoformat()})  # fmt: skip
    task_create(node=node, grant=grant, account=account, kind=K.SET_KEYS,
                payload={"username": name, "keys": authorized_keys(user)})  # fmt: skip
    task_create(node=node, grant=grant, account=account, kind=K.SET_GPUS,
                payload={"username": name, "gpus": grant_gpu_ids(grant)})  # fmt: skip
    enqueue_node(node.pk)
    return {node.pk}
