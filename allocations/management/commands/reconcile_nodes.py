"""Compare every node with what the database wants and repair drift now (also run periodically).
Prints in the operator's language (OperatorCommand)."""

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from allocations.jobs import node_tasks_job, reconcile_node_job
from allocations.models import Node, ProvisioningTask
from portal.management.operator import OperatorCommand


def reconciled(outcome: int | str | None) -> str:
    """What `reconcile_node_job` found: repairs queued, why the node could not be asked, or gone."""
    if outcome is None:
        return _("no longer registered")
    if isinstance(outcome, str):
        return outcome
    return ngettext("%(count)d repair queued", "%(count)d repairs queued", outcome) % {"count": outcome}


def repairs_run(outcome: dict) -> str:
    """What `node_tasks_job` did: tasks run, and when the rest is tried again."""
    ran = outcome["ran"]
    text = ngettext("%(count)d task run", "%(count)d tasks run", ran) % {"count": ran}
    if outcome.get("busy"):
        text += _(", another worker holds the node")
    if outcome.get("retry_in"):
        text += _(", the rest again in %(seconds)s s") % {"seconds": outcome["retry_in"]}
    return text


class Command(OperatorCommand):
    help = "Reconcile every node now and run the repairs in this process, printing progress."

    def handle(self, *args, **opts) -> None:
        nodes = list(Node.objects.exclude(host_key="").order_by("hostname").values_list("pk", "hostname"))
        self.stdout.write(
            ngettext("Reconciling %(count)d node.", "Reconciling %(count)d nodes.", len(nodes)) % {"count": len(nodes)}
        )
        for n, (pk, hostname) in enumerate(nodes, 1):
            self.progress(n, len(nodes), f"{hostname}: {reconciled(reconcile_node_job(pk))}")
        busy = list(
            Node.objects.filter(tasks__state__in=ProvisioningTask.OPEN)
            .distinct()
            .order_by("hostname")
            .values_list("pk", "hostname")
        )
        if busy:
            self.stdout.write(
                ngettext("Running the repairs on %(count)d node.", "Running the repairs on %(count)d nodes.", len(busy))
                % {"count": len(busy)}
            )
        for n, (pk, hostname) in enumerate(busy, 1):
            self.progress(n, len(busy), f"{hostname}: {repairs_run(node_tasks_job(pk))}")
        self.stdout.write(self.style.SUCCESS(self.done()))
