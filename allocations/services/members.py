"""Members joining or leaving a live grant: a member who leaves the organisation (removed or on
their own) loses node access through the same REVOKE path as a grant's end; a member who becomes
the principal investigator of a running grant gets their account, keys and GPUs there."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction

from allocations.models import Grant, NodeAccount, ProvisioningTask
from allocations.services import jupyter as jupyter_services
from allocations.services.enqueue import enqueue_node
from allocations.services.grants import (
    account_payload,
    authorized_keys,
    ensure_account,
    member_gpu_ids,
    queue_grant_gpus,
)
from allocations.services.provisioning import task_create, tasks_supersede

G = Grant.Status
K = ProvisioningTask.Kind
# Grants whose members hold (or are being given) node access.
LIVE = frozenset({G.PENDING, G.PROVISIONING, G.ACTIVE, G.SUSPENDED})


def _member_accounts(grant: Grant, node) -> list[NodeAccount]:
    return list(NodeAccount.objects.filter(node=node, user__in=[u.pk for u in grant.members()]))


@transaction.atomic
def grant_member_removed(*, grant: Grant, user) -> set[int]:
    """Take `user` off the grant on its nodes: out of its GPUs' device ACLs (their uid can no
    longer open them, whatever their processes keep; holders are killed), their Jupyter of
    this grant stopped, and their account revoked unless
    another live grant of an organisation they still belong to needs it there (then only
    CUDA_VISIBLE_DEVICES shrinks). Open tasks that would give this user access for this grant
    are cancelled first, so nothing undoes the revocation. Call it after the membership is gone
    (Grant.members and of_member then no longer count this user). Returns the node ids that got
    work."""
    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    node_ids = set(grant.assignments.values_list("node_id", flat=True)) | set(
        grant.tasks.values_list("node_id", flat=True)
    )
    accounts = list(NodeAccount.objects.filter(user=user, node_id__in=node_ids).select_related("node", "user"))
    tasks_supersede(
        tasks=grant.tasks.filter(
            account__in=accounts, kind__in=[K.ENSURE_ACCOUNT, K.SET_KEYS, K.SET_GPUS, K.START_JUPYTER]
        ),
        reason="superseded: member left",
    )
    still_needed = Grant.objects.filter(status__in=[G.PROVISIONING, G.ACTIVE]).exclude(pk=grant.pk).of_member(user)
    nodes: set[int] = set()
    for account in accounts:
        node = account.node
        if grant.status in (G.PROVISIONING, G.ACTIVE) and grant.assignments.filter(node=node).exists():
            queue_grant_gpus(grant, node, _member_accounts(grant, node))
        session = jupyter_services.live_session(grant, account)
        if session is not None:
            jupyter_services.session_queue_stop(session=session)
        if still_needed.filter(assignments__node=node).exists():
            task_create(node=node, grant=grant, account=account, kind=K.SET_GPUS,
                        payload={"username": account.username, "gpus": member_gpu_ids(user, node)})  # fmt: skip
        else:
            task_create(node=node, grant=grant, account=account, kind=K.REVOKE,
                        payload={"username": account.username})  # fmt: skip
        nodes.add(node.pk)
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
    """Give a current member of a provisioning or active grant their account, their uid in the
    ACLs of the grant's GPUs, keys, GPUs and their own Jupyter on the grant's node (all idempotent verbs).
    Nothing for other states: placement and resumption provision every member then."""
    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    if grant.status not in (G.PROVISIONING, G.ACTIVE) or user not in grant.members():
        return set()
    assignment = grant.assignments.select_related("node").first()
    if assignment is None:
        return set()
    node = assignment.node
    expires_on = grant.ends_on + timedelta(days=settings.ACCOUNT_GRACE_DAYS)
    account = ensure_account(user, node, expires_on)
    name = account.username
    task_create(node=node, grant=grant, account=account, kind=K.ENSURE_ACCOUNT,
                payload=account_payload(account, account.expires_on))  # fmt: skip
    queue_grant_gpus(grant, node, _member_accounts(grant, node))
    task_create(node=node, grant=grant, account=account, kind=K.SET_KEYS,
                payload={"username": name, "keys": authorized_keys(user)})  # fmt: skip
    task_create(node=node, grant=grant, account=account, kind=K.SET_GPUS,
                payload={"username": name, "gpus": member_gpu_ids(user, node)})  # fmt: skip
    jupyter_services.session_queue_start(session=jupyter_services.session_for(grant, account), gpus=grant.gpu_uuids())
    enqueue_node(node.pk)
    return {node.pk}
