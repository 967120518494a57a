"""uids on nodes: allocated once by the portal, the same on every node, never reused.

`useradd` on each node would pick the next free uid there, so one person would have different
uids on two nodes and two people could share one across nodes; on a shared filesystem one
user's files would then belong to another. The number is NODE_UNIX_ID_BASE plus the row's id,
and ids of a PostgreSQL sequence never come back, even after a rollback.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction

from allocations.models import Grant, UnixId


def unix_uid_for(user) -> int:
    """The user's uid (and their private group's gid) on every node."""
    try:
        with transaction.atomic():
            row, _created = UnixId.objects.get_or_create(user=user)
    except IntegrityError:  # another worker allocated it at the same moment
        row = UnixId.objects.get(user=user)
    if row.number is None:
        UnixId.objects.filter(pk=row.pk, number__isnull=True).update(number=settings.NODE_UNIX_ID_BASE + row.pk)
        row.refresh_from_db(fields=["number"])
    return row.number


def grant_label(grant: Grant) -> str:
    """The name the node agent records a grant's GPUs under (no unix group carries it)."""
    return f"{settings.NODE_ACCOUNT_PREFIX}g{grant.pk}"
