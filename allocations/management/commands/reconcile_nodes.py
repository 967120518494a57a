"""Compare every node with what the database wants and repair drift now (also run periodically)."""

from allocations.jobs import node_tasks_job, reconcile_nodes_job
from allocations.models import Node, ProvisioningTask
from portal.management.operator import OperatorCommand


class Command(OperatorCommand):
    help = "Reconcile every node now and run the repairs in this process."

    def handle(self, *args, **opts) -> None:
        for hostname, outcome in reconcile_nodes_job().items():
            self.stdout.write(f"{hostname}: {outcome}")
        for node in Node.objects.filter(tasks__state__in=ProvisioningTask.OPEN).distinct():
            self.stdout.write(f"{node.hostname}: {node_tasks_job(node.pk)}")
