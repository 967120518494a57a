"""Every place that starts a worker serves every queue of settings.RQ_QUEUES, in that order:
`default` first, the periodic reconcile after it. A worker that left out `reconcile` would never
reconcile; one that put it first would hold e-mail and provisioning behind 7,500 node jobs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def unit_environment(unit: str) -> dict[str, str]:
    """Environment= lines as systemd reads them: a space-separated list of assignments, each
    possibly in double quotes (unquoted, `A=x y` sets A=x and ignores `y`)."""
    env = {}
    for line in re.findall(r"^Environment=(.*)$", unit, re.M):
        env |= dict(word.split("=", 1) for word in shlex.split(line) if "=" in word)
    return env


def test_the_worker_unit_serves_default_first_then_reconcile():
    unit = (ROOT / "deploy/systemd/gpu-portal-worker@.service").read_text()
    queues = unit_environment(unit)["RQ_WORKER_QUEUES"].split()
    assert queues == list(settings.RQ_QUEUES) == ["default", "reconcile"]
    assert "rqworker $RQ_WORKER_QUEUES" in unit


def test_the_dev_stack_and_the_topology_test_start_workers_on_every_queue():
    for path in ("scripts/devstack.py", "tests/deploy/topology.py"):
        text = (ROOT / path).read_text()
        assert '"rqworker", "default", "reconcile"' in text, path
