"""A task's state is written only through its transition table, against the state in the
database: a revocation that superseded a running task is not overwritten by the runner."""

from allocations.models import ProvisioningTask
from allocations.services import provisioning
from tests.allocations.test_placement import online_node

T = ProvisioningTask.State


def test_a_task_superseded_while_it_ran_stays_failed(db):
    node = online_node("gpu-01")
    task = provisioning.task_create(node=node, kind="set-keys", payload={"username": "gp1", "keys": []})
    assert provisioning._set_state(task, T.RUNNING, attempts=1)
    # A revocation supersedes it while the runner still holds its own copy of the row.
    assert provisioning.tasks_supersede(tasks=ProvisioningTask.objects.filter(pk=task.pk), reason="revoked") == 1

    assert provisioning._set_state(task, T.SUCCEEDED, result={}) is False
    task.refresh_from_db()
    assert (task.state, task.last_error) == (T.FAILED, "revoked")
