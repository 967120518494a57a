"""Findings people act on: idle grants (a notice on the grant page and an e-mail to its members
as they are when it is sent), processes on GPUs not lent to their user and nodes that stopped
reporting (notices and e-mails to operators), and the weekly list of under-used grants. Each
finding is made once (Notice.key); e-mails go through the outbox in the same transaction as the
notice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Min, Q

from allocations.models import Assignment, Gpu, Grant, Node, NodeAccount, Notice, SampleBatch, UsageHour
from allocations.services.usage import hour_start
from portal.mail import mail_render_and_enqueue, mailing_enqueue

MISUSE_SQL = """
SELECT s.gpu_id, s.node_id, p->>'user' AS username, (p->>'pid')::bigint AS pid, min(s.time) AS first_seen
FROM allocations_gpusample s, jsonb_array_elements(s.processes) p
WHERE s.batch_id IN (
        SELECT id FROM allocations_samplebatch WHERE received_at >= %(since)s AND received_at < %(until)s
    )
  AND s.time >= %(oldest)s AND s.processes <> '[]'::jsonb AND p->>'user' IS NOT NULL
GROUP BY 1, 2, 3, 4
"""
IDLE_AUDIENCE = "allocations.services.findings.grant_members_audience"


def grant_members_audience(*, grant: Grant) -> list:
    """The grant's principal investigator and team who are still members of its organisation."""
    return grant.members()


def _notice(**fields) -> Notice | None:
    """Create the notice unless one with its key exists; None when it did."""
    try:
        with transaction.atomic():
            return Notice.objects.create(**fields)
    except IntegrityError:
        return None


def _tell_operators(subject: str, lines: list[str]) -> None:
    mail_render_and_enqueue(
        template="operators_notice", to=settings.OPERATORS_EMAIL, context={"subject": subject, "lines": lines},
        language="en",
    )  # fmt: skip


@transaction.atomic
def idle_grants_scan(*, now: datetime | None = None) -> list[Notice]:
    """A grant whose GPUs stayed under METERING_IDLE_UTILIZATION % in each of the last
    METERING_IDLE_HOURS complete hours (with samples every hour, and access open) gets one open
    idle notice and its members one e-mail; the notice is resolved when the GPUs work again."""
    now = now or datetime.now(UTC)
    hours, threshold = settings.METERING_IDLE_HOURS, settings.METERING_IDLE_UTILIZATION
    last = hour_start(now) - timedelta(hours=1)
    first = last - timedelta(hours=hours - 1)
    recent = UsageHour.objects.filter(hour__gte=first, hour__lte=last, gpu_minutes__gt=0, sample_count__gt=0)
    idle = (
        recent.values("grant_id")
        .annotate(n=Count("pk"), low=Count("pk", filter=Q(avg_utilization__lt=threshold)))
        .filter(n=hours, low=hours)
    )
    idle_ids = {row["grant_id"] for row in idle}
    Notice.objects.filter(kind=Notice.Kind.IDLE, resolved_at__isnull=True).exclude(grant_id__in=idle_ids).filter(
        grant_id__in=recent.filter(avg_utilization__gte=threshold).values("grant_id")
    ).update(resolved_at=now)
    created = []
    for grant in Grant.objects.filter(pk__in=idle_ids, status=Grant.Status.ACTIVE).select_related("application"):
        if grant.notices.filter(kind=Notice.Kind.IDLE, resolved_at__isnull=True).exists():
            continue
        notice = _notice(
            kind=Notice.Kind.IDLE, key=f"idle:{grant.pk}:{first:%Y%m%d%H}", grant=grant,
            details={"hours": hours, "threshold": threshold, "since": first.isoformat()}, created_at=now,
        )  # fmt: skip
        if notice is None:
            continue
        # Its members as they are when the e-mail is sent (removed or deactivated: not told).
        mailing_enqueue(
            template="grant_idle", audience=IDLE_AUDIENCE, objects={"grant": grant},
            organisation_id=grant.organisation_id, context={"hours": hours, "threshold": threshold},
        )  # fmt: skip
        created.append(notice)
    return created


def _allowed_users(gpu_id: int, at: datetime) -> tuple[Grant | None, set[str]]:
    """The grant the GPU was lent to at `at` and the unix names of its members on that node,
    while its access was open."""
    assignment = (
        Assignment.objects.filter(gpu_id=gpu_id, period__contains=at).select_related("grant__application").first()
    )
    if assignment is None:
        return None, set()
    grant = assignment.grant
    if not grant.access_intervals.filter(opened_at__lte=at).filter(Q(closed_at__isnull=True) | Q(closed_at__gt=at)):
        return grant, set()
    names = NodeAccount.objects.filter(node_id=assignment.node_id, user__in=grant.members()).values_list(
        "username", flat=True
    )
    return grant, set(names)


MAX_MORE_PIDS = 100


def _fold_into_incident(gpu_id: int, username: str, pid: int | None) -> bool:
    """True when this process is already part of a misuse incident of this user on this GPU:
    named by a notice, or added now to the open one (no new notice, no e-mail). A user whose
    loop starts a new process every minute is one incident until an operator resolves it."""
    known = list(Notice.objects.filter(kind=Notice.Kind.MISUSE, gpu_id=gpu_id, details__user=username))
    if any(pid == n.details.get("pid") or pid in n.details.get("more_pids", []) for n in known):
        return True
    incident = next((n for n in known if n.resolved_at is None), None)
    if incident is None:
        return False
    more = incident.details.setdefault("more_pids", [])
    if len(more) < MAX_MORE_PIDS:
        more.append(pid)
        incident.save(update_fields=["details"])
    return True


@transaction.atomic
def misuse_scan(*, since: datetime, until: datetime | None = None) -> list[Notice]:
    """A process of a user on a GPU not lent to them (no grant, another grant, or access closed)
    → one notice per GPU, user and process, and an e-mail to operators with node, GPU, user and
    process. Scans the batches received in [since, until), whatever time they report on, so a
    node catching up is checked too."""
    until = until or datetime.now(UTC)
    oldest = SampleBatch.objects.filter(received_at__gte=since, received_at__lt=until).aggregate(t=Min("first_time"))[
        "t"
    ]
    if oldest is None:
        return []
    with connection.cursor() as cur:
        cur.execute(MISUSE_SQL, {"since": since, "until": until, "oldest": oldest})
        seen = cur.fetchall()
    created = []
    cache: dict[tuple[int, datetime], tuple] = {}
    for gpu_id, _node_id, username, pid, first_seen in sorted(seen, key=lambda row: (row[4], row[3] or 0)):
        key = (gpu_id, first_seen)
        if key not in cache:
            cache[key] = _allowed_users(gpu_id, first_seen)
        grant, allowed = cache[key]
        if username in allowed or _fold_into_incident(gpu_id, username, pid):
            continue
        gpu = Gpu.objects.select_related("node").get(pk=gpu_id)
        notice = _notice(
            kind=Notice.Kind.MISUSE, key=f"misuse:{gpu_id}:{username}:{pid}", node=gpu.node, gpu=gpu, grant=grant,
            details={"user": username, "pid": pid, "gpu_index": gpu.index, "gpu_uuid": gpu.uuid,
                     "first_seen": first_seen.isoformat(), "grant": grant.pk if grant else None},
            created_at=until,
        )  # fmt: skip
        if notice is None:
            continue
        lent = f"lent to grant #{grant.pk}" if grant else "lent to no grant"
        _tell_operators(
            f"Process of {username} on a GPU not assigned to them: {gpu.node.hostname} GPU {gpu.index}",
            [f"node: {gpu.node.hostname}", f"GPU: {gpu.index} ({gpu.uuid}), {lent}", f"user: {username}",
             f"process: pid {pid}", f"first seen: {first_seen.isoformat()}"],
        )  # fmt: skip
        created.append(notice)
    return created


@transaction.atomic
def silent_nodes_scan(*, now: datetime | None = None) -> list[Notice]:
    """An online node with a samples token that has sent nothing for METERING_SILENT_NODE_MINUTES
    → a notice and an e-mail to operators, once per silence; resolved when samples come again."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(minutes=settings.METERING_SILENT_NODE_MINUTES)
    Notice.objects.filter(
        kind=Notice.Kind.SILENT_NODE, resolved_at__isnull=True, node__last_sample_at__gte=cutoff
    ).update(resolved_at=now)
    silent = (
        Node.objects.filter(status=Node.Status.ONLINE)
        .exclude(samples_token_sha256="")
        .filter(Q(last_sample_at__lt=cutoff) | Q(last_sample_at__isnull=True, samples_token_set_at__lt=cutoff))
    )
    created = []
    for node in silent:
        since = node.last_sample_at or node.samples_token_set_at
        notice = _notice(
            kind=Notice.Kind.SILENT_NODE, key=f"silent:{node.pk}:{since:%Y%m%d%H%M%S}", node=node,
            details={"last_sample_at": node.last_sample_at.isoformat() if node.last_sample_at else None},
            created_at=now,
        )  # fmt: skip
        if notice is None:
            continue
        _tell_operators(
            f"Node {node.hostname} stopped reporting GPU samples",
            [f"node: {node.hostname}", f"last sample: {node.last_sample_at or 'never'}",
             "check the gpu-portal-push timer on the node and its network path to the portal"],
        )  # fmt: skip
        created.append(notice)
    return created


def idle_report(*, now: datetime | None = None, days: int = 7) -> list[dict]:
    """Grants idle (under the threshold) for more than METERING_IDLE_REPORT_PERCENT % of their
    measured hours in the last `days` days, most idle first."""
    now = now or datetime.now(UTC)
    threshold = settings.METERING_IDLE_UTILIZATION
    rows = (
        UsageHour.objects.filter(hour__gte=hour_start(now) - timedelta(days=days), sample_count__gt=0)
        .values("grant_id")
        .annotate(n=Count("pk"), low=Count("pk", filter=Q(avg_utilization__lt=threshold)))
    )
    report = [
        {"grant_id": r["grant_id"], "hours": r["n"], "idle_hours": r["low"], "percent": round(100 * r["low"] / r["n"])}
        for r in rows
        if r["n"] and 100 * r["low"] / r["n"] > settings.METERING_IDLE_REPORT_PERCENT
    ]
    return sorted(report, key=lambda r: (-r["percent"], r["grant_id"]))


@transaction.atomic
def idle_report_send(*, now: datetime | None = None) -> list[dict]:
    report = idle_report(now=now)
    grants = Grant.objects.in_bulk([r["grant_id"] for r in report])
    lines = [
        f"grant #{r['grant_id']} ({grants[r['grant_id']].organisation}, {grants[r['grant_id']].gpu_count} GPUs): "
        f"idle {r['idle_hours']} of {r['hours']} measured hours ({r['percent']} %)"
        for r in report
    ] or ["no grant was idle more than the threshold"]
    for to in [settings.OPERATORS_EMAIL, *settings.IDLE_REPORT_EMAILS]:
        mail_render_and_enqueue(
            template="operators_notice", to=to, language="en",
            context={"subject": f"Weekly list of idle grants ({len(report)})", "lines": lines},
        )  # fmt: skip
    return report
