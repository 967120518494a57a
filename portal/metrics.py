"""Prometheus metrics: `/metrics` (docs/deployment.md, "Metrics and alerts").

Two kinds. Request counters and latencies are counted in each process by
`RequestMetricsMiddleware`; under gunicorn they are added up across workers by
prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by the web unit), so any
worker answers for all. Everything else (queues, provisioning, nodes, ingest, outbox, webhooks,
invoices) is read at each scrape from PostgreSQL and Redis by `PortalCollector`: a fixed number
of indexed queries whatever the size of the database (tests/deploy/test_metrics.py holds the
count), so a scrape stays cheap at 60,000 GPUs and every web host reports the same figures.

The endpoint is not public: it needs `Authorization: Bearer METRICS_TOKEN` and, when
`METRICS_ALLOWED_NETWORKS` is set, a client address inside it; with neither configured it is a
404 like any unknown page.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta

import django_rq
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUESTS = Counter(
    "gpu_portal_http_requests_total", "HTTP responses by URL name, method and status.", ["view", "method", "status"]
)
LATENCY = Histogram(
    "gpu_portal_http_request_duration_seconds",
    "Time from the first middleware to the response, by URL name.",
    ["view"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SCRAPE_ERRORS = Counter("gpu_portal_metrics_scrape_errors_total", "Parts of a /metrics scrape that failed.", ["part"])
SAMPLE_WINDOW = timedelta(minutes=5)


class RequestMetricsMiddleware:
    """Counts every response by URL name (never the path: ids in labels would grow without end)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or "<unnamed>") if match else "<unresolved>"
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(view, method, str(response.status_code)).inc()
        LATENCY.labels(view).observe(time.perf_counter() - start)
        return response


def _gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), float(value or 0))
    return family


def _age(now, oldest) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


class PortalCollector(Collector):
    """The portal's state, read at each scrape. One query per part; each uses an index (partial
    indexes on the unfinished rows: outbox_unsent, task_unfinished_idx, invoice_open_due_idx,
    stripe_event_unprocessed_idx; SampleBatch by received_at). Nodes are one small table."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        for part, reader in (
            ("outbox", self._outbox),
            ("provisioning", self._provisioning),
            ("nodes", self._nodes),
            ("samples", self._samples),
            ("stripe", self._stripe),
            ("invoices", self._invoices),
        ):
            try:
                yield from reader(now)
            except Exception:  # a failing part must not hide the others
                log.exception("metrics: %s failed", part)
                SCRAPE_ERRORS.labels(part).inc()
        yield from self._queues(now)

    def _outbox(self, now) -> Iterator[Metric]:
        from portal.models import OutboxMessage

        row = OutboxMessage.objects.filter(sent_at=None).aggregate(n=Count("id"), oldest=Min("created_at"))
        yield _gauge("gpu_portal_outbox_backlog", "Outbox rows not yet sent to Redis.", row["n"])
        yield _gauge(
            "gpu_portal_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row.", _age(now, row["oldest"])
        )

    def _provisioning(self, now) -> Iterator[Metric]:
        from allocations.models import ProvisioningTask

        T = ProvisioningTask.State
        rows = (
            ProvisioningTask.objects.exclude(state=T.SUCCEEDED)
            .values("state")
            .annotate(
                n=Count("id"), oldest=Min("created_at"), need_action=Count("id", filter=ProvisioningTask.needs_action())
            )
            .order_by()
        )
        by_state = {r["state"]: r for r in rows}
        family = GaugeMetricFamily(
            "gpu_portal_provisioning_tasks",
            "Unfinished and failed provisioning tasks by state (failed: all ever, history).",
            labels=["state"],
        )
        for state in (T.QUEUED, T.RUNNING, T.RETRYING, T.FAILED):
            family.add_metric([state.value], by_state.get(state, {}).get("n", 0))
        yield family
        yield _gauge(
            "gpu_portal_provisioning_tasks_need_action",
            "Failed provisioning tasks whose purpose still stands: a revocation not done, or a task of a live "
            "grant (or of none) that no later task of its kind repaired.",
            by_state.get(T.FAILED, {}).get("need_action", 0),
        )
        open_oldest = [r["oldest"] for s, r in by_state.items() if s in ProvisioningTask.OPEN and r["oldest"]]
        yield _gauge(
            "gpu_portal_provisioning_task_oldest_open_age_seconds",
            "Age of the oldest queued, running or retrying provisioning task.",
            _age(now, min(open_oldest)) if open_oldest else 0,
        )

    def _nodes(self, now) -> Iterator[Metric]:
        from allocations.models import Node

        cutoff = now - timedelta(minutes=settings.METERING_SILENT_NODE_MINUTES)
        statuses = [s.value for s in Node.Status]
        silent = (
            Q(status=Node.Status.ONLINE)
            & ~Q(samples_token_sha256="")
            & (Q(last_sample_at__lt=cutoff) | Q(last_sample_at__isnull=True, samples_token_set_at__lt=cutoff))
        )
        row = Node.objects.aggregate(
            silent=Count("id", filter=silent), **{s: Count("id", filter=Q(status=s)) for s in statuses}
        )
        family = GaugeMetricFamily("gpu_portal_nodes", "GPU nodes by status.", labels=["status"])
        for status in statuses:
            family.add_metric([status], row[status])
        yield family
        yield _gauge(
            "gpu_portal_nodes_not_reporting",
            "Online nodes with a samples token that sent nothing for METERING_SILENT_NODE_MINUTES.",
            row["silent"],
        )

    def _samples(self, now) -> Iterator[Metric]:
        from allocations.models import SampleBatch

        row = SampleBatch.objects.filter(received_at__gte=now - SAMPLE_WINDOW).aggregate(
            batches=Count("id"), samples=Sum("sample_count")
        )
        yield _gauge("gpu_portal_samples_received_5m", "GPU samples accepted in the last 5 minutes.", row["samples"])
        yield _gauge(
            "gpu_portal_sample_batches_received_5m", "Sample batches accepted in the last 5 minutes.", row["batches"]
        )

    def _stripe(self, now) -> Iterator[Metric]:
        from billing.models import StripeEvent

        row = StripeEvent.objects.filter(processed_at=None).aggregate(n=Count("id"), oldest=Min("received_at"))
        yield _gauge("gpu_portal_stripe_events_unprocessed", "Stripe webhook events not processed yet.", row["n"])
        yield _gauge(
            "gpu_portal_stripe_event_oldest_unprocessed_age_seconds",
            "Webhook lag: age of the oldest received but unprocessed Stripe event.",
            _age(now, row["oldest"]),
        )

    def _invoices(self, now) -> Iterator[Metric]:
        from billing.models import Invoice
        from billing.models.invoices import AMOUNT_DUE_KRW

        today = timezone.localdate(now)
        overdue = Q(due_on__lt=today)
        row = Invoice.objects.filter(status=Invoice.Status.OPEN).aggregate(
            unpaid=Count("id"),
            overdue=Count("id", filter=overdue),
            overdue_krw=Sum(AMOUNT_DUE_KRW, filter=overdue),  # carried amounts it collects included
        )
        yield _gauge("gpu_portal_invoices_unpaid", "Open (unpaid) invoices.", row["unpaid"])
        yield _gauge("gpu_portal_invoices_overdue", "Open invoices past their due date.", row["overdue"])
        yield _gauge(
            "gpu_portal_invoices_overdue_krw",
            "Amount due of the overdue invoices in KRW (carried amounts included).",
            row["overdue_krw"],
        )

    def _queues(self, now) -> Iterator[Metric]:
        """Per queue: waiting jobs, the oldest one's age, failed jobs; and live workers."""
        from rq import Worker

        depth = GaugeMetricFamily("gpu_portal_rq_queue_jobs", "Jobs waiting in the RQ queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "gpu_portal_rq_queue_oldest_job_age_seconds", "Age of the oldest waiting job.", labels=["queue"]
        )
        failed = GaugeMetricFamily("gpu_portal_rq_failed_jobs", "Jobs in the failed registry.", labels=["queue"])
        workers = 0
        up = 1
        try:
            for name in settings.RQ_QUEUES:
                queue = django_rq.get_queue(name)
                depth.add_metric([name], queue.count)
                first = queue.get_job_ids(0, 1)
                job = queue.fetch_job(first[0]) if first else None
                enqueued = job.enqueued_at if job else None
                if enqueued is not None and enqueued.tzinfo is None:  # RQ keeps UTC
                    enqueued = enqueued.replace(tzinfo=UTC)
                age.add_metric([name], _age(now, enqueued))
                failed.add_metric([name], queue.failed_job_registry.count)
            workers = Worker.count(connection=django_rq.get_connection("default"))
        except Exception as exc:  # noqa: BLE001 - Redis down: say so, keep the other figures
            log.warning("metrics: Redis: %s", exc)
            SCRAPE_ERRORS.labels("redis").inc()
            up = 0
        else:
            yield depth
            yield age
            yield failed
            yield _gauge(
                "gpu_portal_rq_workers",
                "Registered RQ workers (a killed one counts until its heartbeat expires, about 7 minutes).",
                workers,
            )
        yield _gauge("gpu_portal_redis_up", "1 when Redis answered this scrape.", up)


def _client_allowed(request: HttpRequest) -> bool:
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return False
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return False
    if networks:
        from allauth.account.adapter import get_adapter

        try:
            address = ipaddress.ip_address(get_adapter(request).get_client_ip(request))
        except (PermissionDenied, ValueError):
            return False
        if not any(address in ipaddress.ip_network(net, strict=False) for net in networks):
            return False
    return True


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; a 404 for anyone without the token or outside the networks."""
    if not _client_allowed(request):
        raise Http404
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # request counters of every gunicorn worker
    else:
        for collector in (REQUESTS, LATENCY, SCRAPE_ERRORS):
            registry.register(collector)
    registry.register(PortalCollector())
    for attempt in range(3):
        try:
            body = generate_latest(registry)
            break
        except FileNotFoundError:  # a dead worker's file folded away (gunicorn.conf.py) while read
            if attempt == 2:
                raise
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
