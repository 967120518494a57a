"""Grant state changes. Placement and provisioning join here with the access issue."""

from __future__ import annotations

import django_rq

from allocations.models import Grant, GrantEvent


def grant_created(*, grant: Grant, actor) -> Grant:
    """Record the grant's first state and queue its provisioning after commit."""
    GrantEvent.objects.create(grant=grant, actor=actor, old_status="", new_status=grant.status)
    from allocations.jobs import grant_provision_job

    django_rq.enqueue(grant_provision_job, grant.pk)  # RQ COMMIT_MODE: sent on commit, never on rollback
    return grant
