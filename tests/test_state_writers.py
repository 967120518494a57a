"""Every status/state field has one writer: the service beside its model, which checks the
transition and writes the event row. Nothing else (admin, views, jobs, commands, other
services) writes `.status` / `.state` or updates them in bulk."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The services that own a status/state field.
WRITERS = {
    "allocations/services/grants.py",  # Grant
    "allocations/services/jupyter.py",  # JupyterSession
    "allocations/services/node_status.py",  # Node
    "allocations/services/provisioning.py",  # ProvisioningTask (and JupyterSession)
    "allocations/services/accounts.py",  # NodeAccount
    "allocations/services/node_operations.py",  # NodeOperation
    "portal/services/applications.py",  # Application
    "billing/services/invoices.py",  # Invoice
    "billing/services/payments.py",  # HourPack
    "billing/services/invoicing_runs.py",  # InvoicingRun
    "portal/mail.py",  # Mailing
}
ASSIGNMENT = re.compile(r"\b\w+\.(status|state)\s*=(?!=)")
BULK = re.compile(r"\.update\([^)]*\b(status|state)\s*=", re.S)
# Each model's status/state is written in bulk (a guarded update) only by its own service.
OWNER = {
    "Grant": "allocations/services/grants.py",
    "Node": "allocations/services/node_status.py",
    "NodeAccount": "allocations/services/accounts.py",
    "ProvisioningTask": "allocations/services/provisioning.py",
    "NodeOperation": "allocations/services/node_operations.py",
    "JupyterSession": "allocations/services/jupyter.py",
    "Application": "portal/services/applications.py",
    "Invoice": "billing/services/invoices.py",
    "HourPack": "billing/services/payments.py",
    "InvoicingRun": "billing/services/invoicing_runs.py",
    "Mailing": "portal/mail.py",
}
OWNED_BULK = re.compile(r"\b(" + "|".join(OWNER) + r")\.objects[^\n]*\.update\([^)]*\b(status|state)=")


def sources():
    for app in ("allocations", "portal", "billing"):
        for path in (ROOT / app).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if "/migrations/" not in rel and "/agent/" not in rel:
                yield rel, path.read_text()


def test_only_the_owning_services_write_a_status_or_state():
    offenders = [
        rel for rel, text in sources() if rel not in WRITERS and (ASSIGNMENT.search(text) or BULK.search(text))
    ]
    assert offenders == []


def test_no_service_updates_another_models_status_in_bulk():
    offenders = [
        (rel, m.group(0)) for rel, text in sources() for m in OWNED_BULK.finditer(text) if OWNER[m.group(1)] != rel
    ]
    assert offenders == []
