"""Every place that starts a worker serves every queue of settings.RQ_QUEUES, in that order:
`default` first, the periodic reconcile after it. A worker that left out `reconcile` would never
reconcile; one that put it first would hold e-mail and provisioning behind 7,500 node jobs."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_worker_unit_serves_default_first_then_reconcile():
    unit = (ROOT / "deploy/systemd/gpu-portal-worker@.service").read_text()
    queues = re.search(r"^Environment=RQ_WORKER_QUEUES=(.*)$", unit, re.M).group(1).split()
    assert queues == list(settings.RQ_QUEUES) == ["default", "reconcile"]
    assert "rqworker $RQ_WORKER_QUEUES" in unit


def test_the_dev_stack_and_the_topology_test_start_workers_on_every_queue():
    for path in ("scripts/devstack.py", "tests/deploy/topology.py"):
        text = (ROOT / path).read_text()
        assert '"rqworker", "default", "reconcile"' in text, path
