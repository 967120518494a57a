"""Node accounts' state has one writer: `account_set_state`, which follows NodeAccount.ALLOWED
on a locked row and writes a NodeAccountEvent. The state records what the node did (a task
succeeded) or what the portal wants next (an account to create again)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from allocations.models import NodeAccount, NodeAccountEvent


@transaction.atomic
def account_set_state(*, account: NodeAccount, state: str, reason: str, task=None, **fields) -> NodeAccount:
    """Set the state (and any other given fields, e.g. expires_on). Setting the state it
    already has writes no event, so a repeated task records nothing twice."""
    account = NodeAccount.objects.select_for_update().get(pk=account.pk)
    old = account.state
    if state != old and state not in NodeAccount.ALLOWED[old]:
        raise ValueError(f"account {account.pk}: {old} → {state} is not allowed")
    account.state = state
    account.updated_at = timezone.now()
    for key, value in fields.items():
        setattr(account, key, value)
    account.save(update_fields=["state", "updated_at", *fields])
    if state != old:
        NodeAccountEvent.objects.create(account=account, old_status=old, new_status=state, reason=reason, task=task)
    return account
