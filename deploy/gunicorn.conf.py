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
# The client's address as nginx saw it (X-Real-IP, set by deploy/nginx/gpu-portal.conf), not
# X-Forwarded-For, which begins with whatever the client wrote into it.
access_log_format = '%({x-real-ip}i)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# X-Forwarded-Proto is trusted only from the unix socket (nginx); the portal's
# SECURE_PROXY_SSL_HEADER reads it too.
forwarded_allow_ips = "127.0.0.1,::1"


def child_exit(server, worker) -> None:
    """Prometheus multiprocess mode: a dead worker's live gauges stop counting, and its counters
    and histograms are folded into one archive file per type, so the folder (which every scrape
    reads whole) holds the live workers' files plus two, however many workers gunicorn replaced
    (max_requests, reloads, timeouts). Only the arbiter runs this: the archive has one writer."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    multiprocess.mark_process_dead(worker.pid, directory)
    for kind in ("counter", "histogram"):
        dead = os.path.join(directory, f"{kind}_{worker.pid}.db")
        if not os.path.exists(dead):
            continue
        archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(dead):
                archive.write_value(key, archive.read_value(key)[0] + value, timestamp)
        finally:
            archive.close()
        os.remove(dead)
