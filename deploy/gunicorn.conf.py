"""gunicorn settings of the portal's web service (deploy/systemd/gpu-portal-web.service).

The socket comes from systemd (gpu-portal-web.socket: a unix socket only nginx may open), so
no `bind` here. Each worker holds one persistent PostgreSQL connection (DB_CONN_MAX_AGE), so
workers x web hosts + RQ workers must stay below PostgreSQL's max_connections
(docs/deployment.md, "Sizing").
"""

import os

# Sync workers: the portal's requests are short (no remote calls in a request; SSH and Stripe
# run in RQ jobs). 2 x cores + 1 is gunicorn's rule; WEB_WORKERS overrides it.
workers = int(os.environ.get("WEB_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
worker_class = "sync"
# nginx waits 60 s for an answer (proxy_read_timeout); gunicorn kills a worker stuck longer.
timeout = 65
graceful_timeout = 30
# Recycle workers now and then (memory growth in a long-lived process); jitter avoids all at once.
max_requests = 5000
max_requests_jitter = 500
# Logs go to stdout/stderr, which systemd's journal collects (docs/deployment.md, "Logs").
accesslog = "-"
errorlog = "-"
access_log_format = '%({x-forwarded-for}i)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# X-Forwarded-Proto is trusted only from the unix socket (nginx); the portal's
# SECURE_PROXY_SSL_HEADER reads it too.
forwarded_allow_ips = "127.0.0.1,::1"


def child_exit(server, worker) -> None:
    """Prometheus multiprocess mode: a dead worker's live gauges must stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
