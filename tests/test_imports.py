"""Module boundaries: apps share the error type through `portal.errors`, never the portal's
services; services and jobs import in one direction (services enqueue jobs by dotted path), so
each module imports on its own in a fresh interpreter without function-local imports."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
