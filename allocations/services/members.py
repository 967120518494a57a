"""A member leaves an organisation (removed or on their own): their node access on the
organisation's grants ends through the same REVOKE path as a grant's end."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from allocations.models import Grant, JupyterSession, NodeAccount, ProvisioningTask
from allocations.services.grants import enqueue_node
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
