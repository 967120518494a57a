"""Compare every node with what the database wants and repair drift now (also run periodically)."""

from allocations.jobs import node_tasks_job, reconcile_node_job
from allocations.models import Node, ProvisioningTask
from portal.management.operator import OperatorCommand


class Command(OperatorCommand):
    help = "Reconcile every node now and run the repairs in this process, printing progress."

    def handle(self, *args, **opts) -> None:
        nodes = list(Node.objects.exclude(host_key="").order_by("hostname").values_list("pk", "hostname"))
        self.stdout.write(f"Reconciling {len(nodes)} nodes.")
        for n, (pk, hostname) in enumerate(nodes, 1):
            self.progress(n, len(nodes), f"{hostname}: {reconcile_node_job(pk)}")
        busy = list(
            Node.objects.filter(tasks__state__in=ProvisioningTask.OPEN)
            .distinct()
            .order_by("hostname")
            .values_list("pk", "hostname")
        )
        if busy:
            self.stdout.write(f"Running the repairs on {len(busy)} nodes.")
        for n, (pk, hostname) in enumerate(busy, 1):
            self.progress(n, len(busy), f"{hostname}: {node_tasks_job(pk)}")
        self.stdout.write(self.style.SUCCESS(f"Done in {self.elapsed()}."))
