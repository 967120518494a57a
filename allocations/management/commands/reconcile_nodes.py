"""Compare every node with what the database wants and repair drift now (also run periodically)."""

from allocations.jobs import node_tasks_job, reconcile_node_job
from allocations.models import Node, ProvisioningTask
from portal.management.operator import OperatorCommand


def reconciled(outcome: int | str | None) -> str:
    """What `reconcile_node_job` found: repairs queued, why the node could not be asked, or gone."""
    if outcome is None:
        return "no longer registered"
    if isinstance(outcome, str):
        return outcome
    return f"{outcome} repair{'' if outcome == 1 else 's'} queued"


def repairs_run(outcome: dict) -> str:
    """What `node_tasks_job` did: tasks run, and when the rest is tried again."""
    text = f"{outcome['ran']} task{'' if outcome['ran'] == 1 else 's'} run"
    if outcome.get("busy"):
        text += ", another worker holds the node"
    if outcome.get("retry_in"):
        text += f", the rest again in {outcome['retry_in']} s"
    return text


class Command(OperatorCommand):
    help = "Reconcile every node now and run the repairs in this process, printing progress."

    def handle(self, *args, **opts) -> None:
        nodes = list(Node.objects.exclude(host_key="").order_by("hostname").values_list("pk", "hostname"))
        self.stdout.write(f"Reconciling {len(nodes)} nodes.")
        for n, (pk, hostname) in enumerate(nodes, 1):
            self.progress(n, len(nodes), f"{hostname}: {reconciled(reconcile_node_job(pk))}")
        busy = list(
            Node.objects.filter(tasks__state__in=ProvisioningTask.OPEN)
            .distinct()
            .order_by("hostname")
            .values_list("pk", "hostname")
        )
        if busy:
            self.stdout.write(f"Running the repairs on {len(busy)} nodes.")
        for n, (pk, hostname) in enumerate(busy, 1):
            self.progress(n, len(busy), f"{hostname}: {repairs_run(node_tasks_job(pk))}")
        self.stdout.write(self.style.SUCCESS(f"Done in {self.elapsed()}."))
