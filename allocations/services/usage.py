"""Usage hours: what each grant used in each hour. Assigned GPU-minutes come from the grant's
access intervals (the billing basis); average utilisation and energy from the samples of the
GPUs assigned to it while its access was open. An hour is always rebuilt as a whole from what
is stored, so rebuilding it again gives the same rows and late samples are folded in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, FloatField, JSONField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import JSONObject

from allocations.models import AccessInterval, Grant, SampleBatch, UsageHour

# A sample stands for the time until the next sample of its GPU when that comes within
# MAX_SAMPLE_SPAN (jitter), else (a gap: the node stopped sampling, and a gap is not energy;
# or it is the last one) for the nominal minute only.
MAX_SAMPLE_SPAN = timedelta(seconds=120)
NOMINAL_SPAN = timedelta(seconds=60)

SAMPLES_SQL = """
WITH s AS (
    SELECT gpu_id, time, utilization, power_w,
           LEAD(time) OVER (PARTITION BY gpu_id ORDER BY time) AS next_time
    FROM allocations_gpusample
    WHERE time >= %(lookbehind)s AND time < %(lookahead)s
)
SELECT a.grant_id,
       count(*) FILTER (WHERE s.time >= %(start)s) AS samples,
       avg(s.utilization) FILTER (WHERE s.time >= %(start)s) AS utilization,
       coalesce(sum(s.power_w * greatest(0, extract(epoch FROM
           least(CASE WHEN s.next_time IS NULL OR s.next_time > s.time + %(max_span)s THEN s.time + %(nominal)s
                      ELSE s.next_time END, %(end)s)
           - greatest(s.time, %(start)s)))), 0) / 3600
           AS energy_wh
FROM s
JOIN allocations_assignment a ON a.gpu_id = s.gpu_id AND a.period @> s.time
WHERE s.time >= %(lookbehind)s AND s.time < %(end)s
  AND EXISTS (
      SELECT 1 FROM allocations_accessinterval i
      WHERE i.grant_id = a.grant_id AND i.opened_at <= s.time AND (i.closed_at IS NULL OR i.closed_at > s.time)
  )
GROUP BY a.grant_id
"""


def hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _gpu_minutes(start: datetime, end: datetime) -> dict[int, int]:
    minutes: dict[int, int] = {}
    for interval in AccessInterval.objects.filter(opened_at__lt=end).filter(
        Q(closed_at__isnull=True) | Q(closed_at__gt=start)
    ):
        minutes[interval.grant_id] = minutes.get(interval.grant_id, 0) + interval.gpu_minutes(start, end)
    return minutes


@transaction.atomic
def usage_hour_build(*, hour: datetime) -> list[UsageHour]:
    """(Re)build every grant's row for the hour starting at `hour` (UTC, whole hour). A grant
    with neither assigned minutes nor samples in the hour has no row."""
    start = hour_start(hour)
    end = start + timedelta(hours=1)
    minutes = _gpu_minutes(start, end)
    with connection.cursor() as cur:
        cur.execute(
            SAMPLES_SQL,
            {
                "start": start,
                "end": end,
                # The last sample of the hour before stands for the first moments of this one
                # (cut at its own hour's end there, so no time is counted twice or lost).
                "lookbehind": start - MAX_SAMPLE_SPAN,
                "lookahead": end + MAX_SAMPLE_SPAN,
                "nominal": NOMINAL_SPAN,
                "max_span": MAX_SAMPLE_SPAN,
            },
        )
        measured = {grant_id: (count, util, energy) for grant_id, count, util, energy in cur.fetchall()}
    rows = []
    for grant_id in sorted(set(minutes) | set(measured)):
        count, util, energy = measured.get(grant_id, (0, None, 0))
        rows.append(
            UsageHour(
                grant_id=grant_id,
                hour=start,
                gpu_minutes=minutes.get(grant_id, 0),
                sample_count=count,
                # Rounded so that a rebuild over the same rows is equal whatever order the
                # database summed them in.
                avg_utilization=round(float(util), 3) if util is not None else None,
                energy_wh=round(float(energy or 0), 3),
            )
        )
    UsageHour.objects.filter(hour=start).exclude(grant_id__in=[r.grant_id for r in rows]).delete()
    UsageHour.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["grant", "hour"],
        update_fields=["gpu_minutes", "sample_count", "avg_utilization", "energy_wh"],
    )
    return rows


def usage_hours_due(*, now: datetime | None = None) -> list[datetime]:
    """The hours to (re)build now: the last METERING_REBUILD_HOURS complete hours, and every
    older hour that a batch received in that time reported on (a node catching up)."""
    now = now or datetime.now(UTC)
    current = hour_start(now)
    window = settings.METERING_REBUILD_HOURS
    hours = {current - timedelta(hours=n) for n in range(1, window + 1)}
    oldest = now - timedelta(days=settings.METERING_RETENTION_DAYS)
    for first, last in SampleBatch.objects.filter(received_at__gte=current - timedelta(hours=window)).values_list(
        "first_time", "last_time"
    ):
        moment = hour_start(max(first, oldest))
        while moment <= last and moment < current:
            hours.add(moment)
            moment += timedelta(hours=1)
    return sorted(hours)


def usage_hours_build_due(*, now: datetime | None = None) -> int:
    hours = usage_hours_due(now=now)
    for hour in hours:
        usage_hour_build(hour=hour)
    return len(hours)


def _usage_sums(prefix: str = "") -> dict:
    return {
        "used_minutes": Sum(f"{prefix}gpu_minutes"),
        "used_samples": Sum(f"{prefix}sample_count", filter=Q(**{f"{prefix}avg_utilization__isnull": False})),
        "used_weighted": Sum(F(f"{prefix}avg_utilization") * F(f"{prefix}sample_count"), output_field=FloatField()),
        "used_wh": Sum(f"{prefix}energy_wh"),
    }


def usage_summary(gpu_hours: int, sums: dict) -> dict:
    """GPU-hours used against the subsidy, average utilisation weighted by samples, energy, from
    the usage-hour sums named by `_usage_sums` (or the same names from hand-written SQL)."""
    samples = sums["used_samples"] or 0
    used = (sums["used_minutes"] or 0) / 60
    return {
        "gpu_hours_used": round(used, 1),
        "gpu_hours_subsidy": gpu_hours,
        "percent_of_subsidy": round(100 * used / gpu_hours, 1) if gpu_hours else 0,
        "avg_utilization": round((sums["used_weighted"] or 0) / samples, 1) if samples else None,
        "energy_kwh": round((sums["used_wh"] or 0) / 1000, 2),
    }


def grant_usage_summary(grant: Grant) -> dict:
    """Totals for the grant page: GPU-hours used against the subsidy, average utilisation
    (weighted by samples) and energy in kWh. One query."""
    return usage_summary(grant.gpu_hours, grant.usage_hours.aggregate(**_usage_sums()))


def grants_with_usage(grants, *, limit: int | None = None) -> list[dict]:
    """The same totals for a page of grants in one query (the review page): each grant's usage
    hours summed in a subquery of its own, which PostgreSQL runs for the page's rows after the
    sort and LIMIT. Annotating the sums over a join grouped every usage hour by all columns of
    the grant and its application, wide rows sorted before the LIMIT (26 ms for an
    organisation's 20 grants at scale 1, issue 13)."""
    sums = UsageHour.objects.filter(grant=OuterRef("pk")).values("grant").annotate(totals=JSONObject(**_usage_sums()))
    annotated = grants.annotate(usage_totals=Subquery(sums.values("totals"), output_field=JSONField()))
    if limit is not None:
        annotated = annotated[:limit]
    none = dict.fromkeys(_usage_sums())
    return [{"grant": g, **usage_summary(g.gpu_hours, g.usage_totals or none)} for g in annotated]


def organisation_usage(organisation_id: int, *, exclude_application: int | None = None) -> list[dict]:
    """The organisation's grants with their use, newest first (the review page)."""
    grants = Grant.objects.filter(organisation_id=organisation_id).select_related("application")
    if exclude_application:
        grants = grants.exclude(application_id=exclude_application)
    return grants_with_usage(grants.order_by("-created_at"), limit=20)
