"""Module boundaries: apps share the error type through `portal.errors`, never the portal's
services; services and jobs import in one direction (services enqueue jobs by dotted path), so
each module imports on its own in a fresh interpreter without function-local imports."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# module → modules it must never import inside a function (the cycles this layout removed)
NO_LOCAL_IMPORTS = {
    "allocations/services/grants.py": {"allocations.jobs", "allocations.services.nodes"},
    "allocations/services/provisioning.py": {"allocations.models"},
    "allocations/jobs.py": {"allocations.services.grants"},
    "portal/mail.py": {"portal.jobs"},
    "portal/jobs.py": {"portal.mail"},
    "portal/services/applications.py": {"allocations.services.grants"},
}


def imported_modules(node: ast.AST) -> set[str]:
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            found |= {alias.name for alias in child.names}
        elif isinstance(child, ast.ImportFrom) and child.module:
            found.add(child.module)
    return found


def test_allocations_and_billing_never_import_the_portals_services():
    offenders = []
    for app in ("allocations", "billing"):
        for path in (ROOT / app).rglob("*.py"):
            if any(m.startswith("portal.services") for m in imported_modules(ast.parse(path.read_text()))):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize("path", sorted(NO_LOCAL_IMPORTS))
def test_no_function_local_import_hides_a_cycle(path):
    tree = ast.parse((ROOT / path).read_text())
    local = set()
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            local |= imported_modules(func) & NO_LOCAL_IMPORTS[path]
    assert local == set()


@pytest.mark.parametrize(
    "module",
    [
        "allocations.services.grants",
        "allocations.jobs",
        "allocations.services.provisioning",
        "allocations.services.node_operations",
        "portal.mail",
        "portal.jobs",
        "portal.services.applications",
    ],
)
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    code = f"import django; django.setup(); import {module}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
