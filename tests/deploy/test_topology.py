"""The production arrangement proven on one machine (`make topology`; docs/deployment.md): nginx
with deploy/nginx/gpu-portal.conf in front of two gunicorn processes, three RQ workers and one
rqcron, against one PostgreSQL and Debian's redis-server, with three sshd GPU-node stand-ins.

- Provisioning of several grants on three nodes runs across the three workers with one task
  per node at a time and each step once (one account, one Jupyter per member), and finishes
  after the worker running a node's tasks is SIGKILLed (the 5-minute reconcile takes over).
- A Redis restart loses nothing: an approval while Redis is down waits in the outbox, the drain
  timer's command sends it, the surviving workers provision it.
- Samples posted through nginx reach both gunicorns, a repeated batch is stored once; the
  monthly invoicing queued three times at once on three workers issues one invoice per
  organisation with gapless numbers.
- The nginx site: HTTPS only (redirect), one HSTS header, static files with long caching, the
  upload limit answered by nginx, /metrics only on the internal listener and with the token,
  the client's address passed so that sign-in (per-address limits) works behind the socket.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import django_rq
import pytest
import requests
from django.db import connection
from django.utils import timezone
from rq import Worker
from rq.job import Job

from allocations import devnode, ssh
from allocations.devnode import node_bootstrap
from allocations.models import Assignment, Grant, JupyterSession, Node, NodeAccount, ProvisioningTask, SampleBatch
from allocations.services import grants as grant_services
from billing.models import Invoice, InvoiceCounter
from portal.models import Mailing, OutboxMessage
from tests.allocations.helpers import approved_grant, user_with_key
from tests.allocations.metering_helpers import batch, node_with_gpus
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.deploy.topology import METRICS_TOKEN, SiteNode, Stack, site_nodes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the GPU node stand-ins need root; CI runs as root")
T = ProvisioningTask.State


@dataclass
class Site:
    stack: Stack
    nodes: list[SiteNode]
    account_prefix: str
    unix_id_base: int
    cert: str

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.stack.https_port}{path}"


@pytest.fixture(scope="module")
def site(django_db_setup, tmp_path_factory):
    missing = [
        b for b in ("/usr/sbin/nginx", "/usr/bin/redis-server", *devnode.REQUIRED_BINARIES) if not Path(b).exists()
    ]
    if missing:
        pytest.fail(f"missing {missing}: scripts/bootstrap.sh test installs nginx and redis-server (as root)")
    rid = secrets.token_hex(3)
    base = Path(f"/run/gpu-portal-topo-{rid}")
    base.mkdir(mode=0o755)
    account_prefix, unix_id_base = (
        f"gtp{rid}",
        200_000_000 + secrets.randbelow(10_000) * 10_000,
    )  # clear of the node tests
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'].replace('/', '%2F')}:{db['PORT'] or 5432}/{db['NAME']}"
    sshds, nodes, stack = [], [], None
    try:
        nodes = site_nodes(3, base, account_prefix, unix_id_base)
        sshds = [devnode.sshd_start(n) for n in nodes]
        ssh.ensure_key_pair(nodes[0].portal_key)
        node_env = {
            "PROVISIONING_SSH_KEY": nodes[0].portal_key,
            "NODE_ACCOUNT_PREFIX": account_prefix,
            "NODE_UNIX_ID_BASE": str(unix_id_base),
            "PROVISIONING_BACKOFF_SECONDS": "1",
        }
        stack = Stack(tmp_path_factory.mktemp("topology"), url, node_env)
        stack.redis_start()
        stack.collectstatic()
        for i in (1, 2):
            stack.web_start(i)
        for i in (1, 2, 3):
            stack.worker_start(i)
        stack.cron_start()
        stack.wait_web()
        stack.nginx_start()
        yield Site(stack, nodes, account_prefix, unix_id_base, str(stack.tmp / "tls/fullchain.pem"))
    finally:
        if stack is not None:
            stack.stop_all()
        for proc in sshds:
            devnode.sshd_stop(proc)
        for node in nodes:
            devnode.node_remove(node)
        devnode.remove_accounts([account_prefix])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def site_settings(settings, site):
    """This test process queues into the site's Redis and talks to its nodes like a worker."""
    settings.RQ_QUEUES = {
        name: {"URL": site.stack.redis_url, "DEFAULT_TIMEOUT": 600} for name in ("default", "reconcile")
    }
    settings.PROVISIONING_SSH_KEY = site.nodes[0].portal_key
    settings.NODE_ACCOUNT_PREFIX = site.account_prefix
    settings.NODE_UNIX_ID_BASE = site.unix_id_base
    settings.PROVISIONING_BACKOFF_SECONDS = 1
    return settings


def wait_for(condition, timeout: float, what: str, stack: Stack, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    logs = "\n".join(f"--- {n}\n{stack.log(n)[-1500:]}" for n in ("worker1", "worker2", "worker3", "cron"))
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def worker_running_node_tasks(stack: Stack) -> str | None:
    """The name of our worker process whose current job runs a node's provisioning tasks while a
    task is running."""
    if not ProvisioningTask.objects.filter(state=T.RUNNING).exists():
        return None
    by_pid = {p.pid: name for name, p in stack.procs.items() if name.startswith("worker")}
    for worker in Worker.all(connection=django_rq.get_connection("default")):
        job = worker.get_current_job()
        if job is not None and job.func_name == "allocations.jobs.node_tasks_job" and worker.pid in by_pid:
            return by_pid[worker.pid]
    return None


def jupyter_servers(username: str) -> int:
    out = subprocess.run(["pgrep", "-c", "-u", username, "-f", "jupyter"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


@pytest.mark.django_db(transaction=True)
def test_provisioning_on_three_workers_does_each_step_once_and_survives_a_killed_worker_and_a_redis_restart(
    site, site_settings, tmp_path
):
    stack = site.stack
    for i, host in enumerate(site.nodes):
        node_bootstrap(host, hostname=f"gpu-topo-{i}")
    today = timezone.localdate()
    grants = []
    for i in range(5):  # 4 GPUs each on three 8-GPU nodes: two grants share a node
        app, _key = user_with_key(tmp_path, name=f"r{i}")
        grants.append(approved_grant(app, starts_on=today, ends_on=today + timedelta(days=30)))

    # A worker host dies while it runs a node's tasks.
    victim = wait_for(lambda: worker_running_node_tasks(stack), 90, "a worker running node tasks", stack, 0.02)
    stack.kill(victim)
    # rqcron queues reconcile every 5 minutes; it finishes what the dead worker left `running`.
    django_rq.get_queue("reconcile", commit_mode="auto").enqueue("allocations.jobs.reconcile_nodes_fanout_job")

    def all_active():
        return all(g.status == Grant.Status.ACTIVE for g in Grant.objects.filter(pk__in=[g.pk for g in grants]))

    wait_for(all_active, 150, "every grant active", stack, 0.25)

    # No duplicate work: one runner per node at a time, each step once, one Jupyter per member.
    assert not ProvisioningTask.objects.filter(state=T.FAILED).exists()
    nodes_used = set(Assignment.objects.values_list("node__hostname", flat=True))
    assert len(nodes_used) == 3
    for grant in grants:
        assert Assignment.objects.filter(grant=grant).count() == 4
    for node in {t.node for t in ProvisioningTask.objects.select_related("node")}:
        runs = sorted(node.tasks.filter(state=T.SUCCEEDED).values_list("started_at", "finished_at"))
        for (_s1, end), (start, _e2) in itertools.pairwise(runs):
            assert start >= end, f"two tasks ran at once on {node}"
    for account in NodeAccount.objects.all():
        assert account.tasks.filter(kind=ProvisioningTask.Kind.ENSURE_ACCOUNT).count() == 1
        assert jupyter_servers(account.username) == 1, (
            account.username,
            victim,
            list(account.tasks.values_list("kind", "state", "attempts", "started_at", "finished_at", "last_error")),
            list(JupyterSession.objects.filter(account=account).values()),
            subprocess.run(["ps", "-fu", account.username], capture_output=True, text=True).stdout,
        )

    # What one reconcile costs per node (docs/deployment.md, sizing): SSH, the agent's status, queries.
    timings = []
    for node in Node.objects.filter(hostname__startswith="gpu-topo-"):
        start = time.monotonic()
        assert grant_services.reconcile_node(node=node) == []  # nothing to repair after provisioning
        timings.append(time.monotonic() - start)
    print(f"reconcile per node: {', '.join(f'{t:.2f}' for t in timings)} s")

    # Redis restarts. An approval meanwhile commits; its job waits in the outbox.
    stack.redis_stop()
    health = requests.get(site.url("/healthz"), verify=site.cert, timeout=10)
    assert health.status_code == 503 and health.json()["redis"] != "ok"
    app, _key = user_with_key(tmp_path, name="late")
    late = approved_grant(app, starts_on=today, ends_on=today + timedelta(days=30))
    waiting = OutboxMessage.objects.filter(sent_at=None, func="allocations.jobs.grant_provision_job")
    assert waiting.count() == 1 and waiting.get().last_error
    stack.redis_start()
    assert "sent" in stack.manage("outbox_drain").lower() or not waiting.exists()  # the drain timer
    assert not waiting.exists()
    wait_for(lambda: Grant.objects.get(pk=late.pk).status == Grant.Status.ACTIVE, 90, "the late grant", stack, 0.25)
    alive = [n for n in ("worker1", "worker2", "worker3", "cron", "web1", "web2") if n != victim]
    assert all(stack.procs[n].poll() is None for n in alive), {n: stack.procs[n].poll() for n in alive}
    assert requests.get(site.url("/healthz"), verify=site.cert, timeout=10).status_code == 200

    stack.worker_start(int(victim[-1]))  # systemd's Restart=always brings the dead worker back


def post_batch(site: Site, hostname: str, token: str, body: dict) -> int:
    response = requests.post(
        site.url(f"/api/v1/nodes/{hostname}/samples"), json=body, headers={"Authorization": f"Bearer {token}"},
        verify=site.cert, timeout=30,
    )  # fmt: skip
    return response.status_code


@pytest.mark.django_db(transaction=True)
def test_ingest_through_nginx_reaches_both_web_processes_and_invoicing_on_three_workers_issues_each_invoice_once(
    site, site_settings
):
    stack = site.stack
    posts = []
    now = time.time()
    for i in range(3):
        node, token, gpus = node_with_gpus(f"gpu-ingest-{i}")
        posts += [(node.hostname, token, batch(gpus, at=now - 60 * k)) for k in range(4)]
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda p: post_batch(site, *p), posts))
    assert set(codes) <= {200, 201, 202}, codes
    assert post_batch(site, *posts[0]) in {200, 201, 202}  # a node re-sending a batch
    assert SampleBatch.objects.count() == 12
    assert sum(SampleBatch.objects.values_list("sample_count", flat=True)) == 96
    for web in ("web1", "web2"):  # nginx spread the batches over both gunicorns
        assert "POST /api/v1/nodes/gpu-ingest-" in stack.log(web), web
    assert re.search(r"^127\.0\.0\.1 \"POST /api/v1/nodes/", stack.log("web1"), re.M)  # X-Real-IP from nginx

    # Prometheus: only the internal listener, only with the token.
    internal = f"http://127.0.0.1:{stack.metrics_port}/metrics"
    assert requests.get(internal, timeout=10).status_code == 404
    assert requests.get(site.url("/metrics"), verify=site.cert, timeout=10).status_code == 404
    scrape = requests.get(internal, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    assert scrape.status_code == 200
    assert "gpu_portal_samples_received_5m 96.0" in scrape.text
    # Three live workers; the one SIGKILLed earlier stays registered until its heartbeat expires.
    assert int(float(re.search(r"^gpu_portal_rq_workers (\S+)$", scrape.text, re.M).group(1))) >= 3
    assert re.search(r'^gpu_portal_http_requests_total\{method="POST",status="20\d",view="allocations:node_samples"\}',
                     scrape.text, re.M)  # fmt: skip

    # The monthly run queued three times at once: three workers, one invoice per organisation.
    rate_card("startup", 3000)
    orgs = []
    for _ in range(4):
        org, _owner = startup()
        grant_for(org, intervals=[(at(2, 9, month=10), at(3, 19, month=10))])
        orgs.append(org)
    queue = django_rq.get_queue("default", commit_mode="auto")
    jobs = [
        queue.enqueue("billing.services.invoices.invoices_run", month=date(2026, 10, 1), today=date(2026, 11, 1))
        for _ in range(3)
    ]

    def finished():
        fetched = Job.fetch_many([j.id for j in jobs], connection=queue.connection)
        assert not any(j.is_failed for j in fetched), [j.exc_info for j in fetched if j.is_failed]
        return fetched if all(j.is_finished for j in fetched) else None

    done = wait_for(finished, 60, "three invoicing runs", stack, 0.1)
    assert len({j.worker_name for j in done}) >= 2  # they ran side by side
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 5)]
    assert sorted(Invoice.objects.values_list("organisation_id", flat=True)) == sorted(o.pk for o in orgs)
    assert InvoiceCounter.objects.get(year=2026).last == 4

    # Each invoice's e-mail goes out once, through the outbox drain and a worker, to the members
    # of the moment (portal.mail.mailing_send). Waiting for it also leaves no job writing to the
    # database when the test's data is flushed.
    def mailed():
        rows = list(Mailing.objects.filter(template="invoice_issued").values_list("status", "recipients"))
        return rows if len(rows) == 4 and all(status == "sent" and len(to) == 1 for status, to in rows) else None

    wait_for(mailed, 60, "the four invoices' e-mails", stack, 0.1)


@pytest.mark.django_db(transaction=True)
def test_the_nginx_site_serves_https_only_with_hsts_static_files_and_its_upload_limit(site):
    redirect = requests.get(f"http://127.0.0.1:{site.stack.http_port}/rates/", allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"].startswith("https://")
    page = requests.get(site.url("/accounts/login/"), verify=site.cert, timeout=10)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"  # one header
    static = requests.get(site.url("/static/admin/css/base.css"), verify=site.cert, timeout=10)
    assert static.status_code == 200 and "immutable" in static.headers["Cache-Control"]
    assert "GET /static/admin/css/base.css" not in site.stack.log("web1") + site.stack.log("web2")

    # A failed sign-in is an ordinary form error: allauth's per-address limit found the client's
    # address in X-Forwarded-For (gunicorn's unix socket has none).
    session = requests.Session()  # verify= on each call: a session's own is overridden by REQUESTS_CA_BUNDLE
    form = session.get(site.url("/accounts/login/"), verify=site.cert, timeout=10).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    answer = session.post(
        site.url("/accounts/login/"), data={"csrfmiddlewaretoken": csrf, "login": "x@example.org", "password": "wrong"},
        headers={"Referer": "https://127.0.0.1/accounts/login/"}, verify=site.cert, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text[:500]

    # 13 MB is the limit: nginx answers a larger body itself, before gunicorn reads a byte.
    context = ssl.create_default_context(cafile=site.cert)
    conn = http.client.HTTPSConnection("127.0.0.1", site.stack.https_port, context=context, timeout=10)
    conn.putrequest("POST", "/api/v1/nodes/gpu-x/samples")
    conn.putheader("Content-Length", str(14 * 1024 * 1024))
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert "/api/v1/nodes/gpu-x/samples" not in site.stack.log("web1") + site.stack.log("web2")
