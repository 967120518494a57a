"""Jobs the allocation services start, queued through the outbox: sent after commit, never on
rollback, kept while Redis is down. By dotted path, so no service imports the jobs module
(which imports the services)."""

from __future__ import annotations

from portal.outbox import outbox_enqueue

GRANT_PROVISION_JOB = "allocations.jobs.grant_provision_job"
NODE_TASKS_JOB = "allocations.jobs.node_tasks_job"


def enqueue_provision(grant_id: int) -> None:
    outbox_enqueue(GRANT_PROVISION_JOB, grant_id)


def enqueue_node(node_id: int) -> None:
    """Run the node's open provisioning tasks."""
    outbox_enqueue(NODE_TASKS_JOB, node_id)
