"""Placement: which GPUs a grant gets.

Best fit on one node: among online nodes of the granted model with enough free GPUs for the
whole period, the one with the fewest free GPUs wins, so partly used nodes fill up and whole
nodes stay free for 8-GPU grants. The database's exclusion constraint is the final word: two
placements racing for the same GPU cannot both commit, and the loser tries the next node.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import Count, Q
from django.utils import timezone

from allocations.models import Assignment, Gpu, Grant, Node


def grant_period(grant: Grant) -> tuple[datetime, datetime]:
    """From Seoul midnight of the first day (or now, for a grant placed after it began) to Seoul
    midnight after the last day."""
    tz = timezone.get_default_timezone()
    start = datetime.combine(grant.starts_on, time.min, tzinfo=tz)
    end = datetime.combine(grant.ends_on + timedelta(days=1), time.min, tzinfo=tz)
    return max(start, timezone.now()), end


def free_gpus(node: Node, start: datetime, end: datetime):
    busy = Assignment.objects.overlapping(start, end).values("gpu_id")
    return node.gpus.filter(model=node.gpu_model_id).exclude(pk__in=busy).order_by("index")


def grant_place(*, grant: Grant) -> list[Assignment]:
    """Assign GPUs to the grant, or return [] and leave the reason on the grant."""
    existing = list(grant.assignments.select_related("gpu", "node"))
    if existing:
        return existing
    start, end = grant_period(grant)
    # A race lost to another placement (IntegrityError from the exclusion constraint) means the
    # free GPUs changed: look again, a few times, before saying nothing fits.
    for _attempt in range(5):
        busy = Assignment.objects.overlapping(start, end).values("gpu_id")
        candidates = (
            Node.objects.filter(status=Node.Status.ONLINE, gpu_model=grant.gpu_model_id)
            .exclude(host_key="")
            .annotate(free=Count("gpus", filter=Q(gpus__model=grant.gpu_model_id) & ~Q(gpus__pk__in=busy)))
            .filter(free__gte=grant.gpu_count)
            .order_by("free", "hostname")
        )
        node = candidates.first()
        if node is None:
            break
        gpus = list(free_gpus(node, start, end)[: grant.gpu_count])
        if len(gpus) < grant.gpu_count:
            # Another placement took them between the count and this read (found by
            # benchmarks/provisioning.py: with 4 workers a grant was "placed" on no GPUs at all
            # and left pending without a reason): look again.
            continue
        try:
            with transaction.atomic():
                assignments = Assignment.objects.bulk_create(
                    Assignment(grant=grant, node=node, gpu=gpu, period=DateTimeTZRange(start, end, "[)"))
                    for gpu in gpus
                )
                Grant.objects.filter(pk=grant.pk).update(status_reason="")
                return assignments
        except IntegrityError:
            continue
    total = Gpu.objects.filter(model=grant.gpu_model_id, node__status=Node.Status.ONLINE).count()
    if not model_online(grant.gpu_model_id):
        reason = f"Waiting for a node: no node with {grant.gpu_model_id} GPUs is online."
    else:
        reason = (
            f"Waiting for capacity: no online node has {grant.gpu_count} free {grant.gpu_model_id} GPUs "
            f"for {grant.starts_on} – {grant.ends_on} ({total} such GPUs online in all)."
        )
    Grant.objects.filter(pk=grant.pk).update(status_reason=reason)
    return []


def model_online(gpu_model: str) -> bool:
    """Whether any online node (host key pinned) has GPUs of this model."""
    return (
        Node.objects.filter(status=Node.Status.ONLINE, gpu_model=gpu_model, gpus__model=gpu_model)
        .exclude(host_key="")
        .exists()
    )


def grant_release_gpus(*, grant: Grant, at: datetime | None = None) -> None:
    """End the grant's assignments at `at` (now), freeing the GPUs for later grants while
    keeping the history of who had them."""
    at = at or timezone.now()
    for assignment in grant.assignments.all():
        lower = assignment.period.lower
        if assignment.period.upper and assignment.period.upper <= at:
            continue
        if lower >= at:
            assignment.delete()
        else:
            assignment.period = DateTimeTZRange(lower, at, "[)")
            assignment.save(update_fields=["period"])
