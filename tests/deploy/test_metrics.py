"""/metrics for Prometheus: closed to anyone without the token or outside the allowed networks,
the portal's backlogs as an operator's alerts need them, a fixed number of queries per scrape,
and alerting rules that name only metrics the endpoint exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from allocations.models import Grant, Node, NodeAccount, ProvisioningTask, SampleBatch
from billing.models import StripeEvent
from billing.services.invoices import invoice_issue
from portal.metrics import PortalCollector
from portal.models import OutboxMessage
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "metrics-test-token-0123456789"


@pytest.fixture
def metrics_settings(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return settings


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    values: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            values.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return values


def one(values, name, **labels) -> float:
    return values[name][tuple(sorted(labels.items()))]


@pytest.mark.django_db
def test_metrics_is_a_404_without_the_token_or_with_a_wrong_one(client, metrics_settings):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.django_db
def test_metrics_is_a_404_when_nothing_is_configured_even_with_a_header(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_metrics_answers_only_inside_the_allowed_networks_and_a_forged_forwarded_address_does_not_help(
    client, metrics_settings
):
    metrics_settings.METRICS_ALLOWED_NETWORKS = ["10.0.50.0/24"]
    metrics_settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # nginx appends the address it saw: the last entry. A client's own entries come first.
    assert client.get("/metrics", headers={**auth, "X-Forwarded-For": "10.0.50.7"}).status_code == 200
    forged = {**auth, "X-Forwarded-For": "10.0.50.7, 203.0.113.9"}
    assert client.get("/metrics", headers=forged).status_code == 404
    assert client.get("/metrics", headers={**auth, "X-Forwarded-For": "192.168.1.4"}).status_code == 404


@pytest.mark.django_db
def test_requests_are_counted_by_url_name_and_status_never_by_path(client, metrics_settings):
    client.get("/healthz")
    client.get("/applications/987654/")  # anonymous: a redirect to the login page
    client.get("/no-such-page/")
    values = scrape(client)
    counts = values["gpu_portal_http_requests_total"]
    assert one(values, "gpu_portal_http_requests_total", view="healthz", method="GET", status="200") >= 1
    assert (
        one(values, "gpu_portal_http_requests_total", view="portal:application_detail", method="GET", status="302") >= 1
    )
    assert one(values, "gpu_portal_http_requests_total", view="<unresolved>", method="GET", status="404") >= 1
    assert not any("987654" in str(labels) for labels in counts)
    assert one(values, "gpu_portal_http_request_duration_seconds_count", view="healthz") >= 1


def backlogs(now):
    """One of everything an operator is alerted on, with known ages."""
    org, _ = startup()
    grant = grant_for(org, intervals=[(at(2, 9, month=10), at(2, 19, month=10))], node=True)
    node = grant.assignments.first().node
    Node.objects.filter(pk=node.pk).update(
        status=Node.Status.ONLINE, samples_token_sha256="x" * 64, last_sample_at=now - timedelta(hours=1)
    )
    for state, age in (("failed", 5), ("queued", 90), ("succeeded", 600)):
        ProvisioningTask.objects.create(
            node=node, kind="set-keys", state=state, created_at=now - timedelta(minutes=age)
        )
    SampleBatch.objects.create(
        node=node,
        batch_id="b1",
        sample_count=480,
        first_time=now,
        last_time=now,
        received_at=now - timedelta(minutes=1),
    )
    SampleBatch.objects.create(
        node=node, batch_id="b0", sample_count=8, first_time=now, last_time=now, received_at=now - timedelta(hours=2)
    )
    StripeEvent.objects.create(
        event_id="evt_1", type="payment_intent.succeeded", created=now, payload={}, received_at=now - timedelta(hours=1)
    )
    StripeEvent.objects.create(event_id="evt_0", type="x", created=now, payload={}, processed_at=now)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 10, 1), today=date(2026, 11, 1))
    OutboxMessage.objects.update(sent_at=now)  # the invoice's e-mail went out
    OutboxMessage.objects.create(func="portal.jobs.x", created_at=now - timedelta(minutes=20))
    return invoice


@pytest.mark.django_db
def test_metrics_report_the_backlogs_an_operator_is_alerted_on(client, metrics_settings):
    rate_card("startup", 3000)
    now = timezone.now()
    invoice = backlogs(now)
    values = scrape(client)
    assert one(values, "gpu_portal_outbox_backlog") == 1
    assert 20 * 60 - 5 < one(values, "gpu_portal_outbox_oldest_age_seconds") < 20 * 60 + 60
    assert one(values, "gpu_portal_provisioning_tasks", state="failed") == 1
    assert one(values, "gpu_portal_provisioning_tasks", state="queued") == 1
    assert one(values, "gpu_portal_provisioning_tasks", state="running") == 0
    assert one(values, "gpu_portal_provisioning_tasks_need_action") == 1  # no grant: still to do
    assert 90 * 60 - 5 < one(values, "gpu_portal_provisioning_task_oldest_open_age_seconds") < 90 * 60 + 60
    assert one(values, "gpu_portal_nodes", status="online") == 1
    assert one(values, "gpu_portal_nodes_not_reporting") == 1
    assert one(values, "gpu_portal_samples_received_5m") == 480
    assert one(values, "gpu_portal_sample_batches_received_5m") == 1
    assert one(values, "gpu_portal_stripe_events_unprocessed") == 1
    assert 3600 - 5 < one(values, "gpu_portal_stripe_event_oldest_unprocessed_age_seconds") < 3600 + 60
    assert invoice is not None and invoice.due_on < timezone.localdate()
    assert one(values, "gpu_portal_invoices_unpaid") == 1
    assert one(values, "gpu_portal_invoices_overdue") == 1
    assert one(values, "gpu_portal_invoices_overdue_krw") == invoice.total_krw
    assert one(values, "gpu_portal_redis_up") == 1
    assert one(values, "gpu_portal_rq_queue_jobs", queue="default") == 0


@pytest.mark.django_db
def test_the_oldest_waiting_jobs_age_is_reported_per_queue(client, metrics_settings):
    import django_rq

    queue = django_rq.get_queue("default", commit_mode="auto")
    queue.enqueue("portal.jobs.outbox_drain_job")
    values = scrape(client)
    assert one(values, "gpu_portal_rq_queue_jobs", queue="default") == 1
    assert 0 <= one(values, "gpu_portal_rq_queue_oldest_job_age_seconds", queue="default") < 60


@pytest.mark.django_db
def test_a_scrape_costs_the_same_six_queries_with_little_or_much_data(metrics_settings):
    rate_card("startup", 3000)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            list(PortalCollector().collect())
        return len(ctx.captured_queries)

    empty = queries()
    now = timezone.now()
    backlogs(now)
    for _ in range(3):
        org, _ = startup()
        grant_for(org, node=True)
    assert empty == queries() == 6


@pytest.mark.django_db
def test_every_alerting_rule_names_metrics_the_endpoint_exports(client, metrics_settings):
    client.get("/healthz")
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    exported = set()
    for family in text_string_to_metric_families(response.content.decode()):
        # A counter family is named without _total; a histogram's series end in _bucket/_count/_sum.
        exported |= {family.name, *(family.name + s for s in ("_total", "_bucket", "_count", "_sum"))}
        exported |= {sample.name for sample in family.samples}
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    seen = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = set(re.findall(r"\bgpu_portal_[a-z0-9_]+", rule["expr"]))
            assert names or re.search(r"\bup\{", rule["expr"]), rule["alert"]
            assert names <= exported, (rule["alert"], names - exported)
            assert rule["labels"]["severity"] in {"page", "ticket", "info"}
            assert rule["annotations"]["summary"]
            seen.append(rule["alert"])
    doc = (ROOT / "docs/deployment.md").read_text()
    assert seen and all(f"`{name}`" in doc for name in seen)


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian package prometheus) is not installed")
def test_prometheus_accepts_the_alerting_rules():
    out = subprocess.run(
        ["promtool", "check", "rules", str(ROOT / "deploy/prometheus/alerts.yml")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.django_db
def test_failed_tasks_of_ended_grants_and_repaired_ones_stop_counting_as_needing_action(client, metrics_settings):
    """gpu_portal_provisioning_tasks{state="failed"} counts every failed task forever, so the
    alert built on it never cleared once any task had failed."""
    org, _ = startup()
    live = grant_for(org, node=True)
    node = live.assignments.first().node
    ended = grant_for(org, node=True)
    Grant.objects.filter(pk=ended.pk).update(status=Grant.Status.EXPIRED)
    still_open, revoked = (
        NodeAccount.objects.create(user=UserFactory(), node=node, username=f"gp{i}", state=state)
        for i, state in ((1, NodeAccount.State.ACTIVE), (2, NodeAccount.State.REVOKED))
    )

    def failed(kind, grant=None, account=None):
        return ProvisioningTask.objects.create(node=node, grant=grant, account=account, kind=kind, state="failed")

    failed("set-keys", ended, still_open)  # the grant ended: nothing to give any more
    failed("revoke", ended, revoked)  # revoked since (a later run did it)
    failed("set-keys", live, revoked)  # the member left the grant: their account is revoked
    failed("start-jupyter", live, still_open)  # reconcile queued it again, and the new one worked:
    ProvisioningTask.objects.create(node=node, grant=live, account=still_open, kind="start-jupyter", state="succeeded")
    values = scrape(client)
    assert one(values, "gpu_portal_provisioning_tasks", state="failed") == 4  # the history stays
    assert one(values, "gpu_portal_provisioning_tasks_need_action") == 0

    need = {failed("revoke", ended, still_open).pk}  # the ended grant's user may still log in
    need.add(failed("set-keys", live, still_open).pk)  # a live grant's member lacks their key
    need.add(failed("inventory").pk)  # no grant: the node's GPUs were not read
    values = scrape(client)
    assert one(values, "gpu_portal_provisioning_tasks_need_action") == 3

    # The admin's "needs action" filter lists exactly the tasks the alert counts.
    from tests.portal.test_review_admin import staff_user

    client.force_login(staff_user("operator@centre.kr", "allocations.view_provisioningtask"))
    page = client.get("/admin/allocations/provisioningtask/?needs_action=yes")
    assert page.status_code == 200
    assert {row.pk for row in page.context["cl"].result_list} == need
