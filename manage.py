#!/usr/bin/env python
import os
import sys

if sys.version_info < (3, 12):  # noqa: UP036 - say so plainly instead of a SyntaxError deep in Django
    sys.exit(f"Python 3.12 or newer is required (this is {sys.version.split()[0]}); use .venv/bin/python")


def load_devdata_env() -> None:
    """Against a running `make run`: without DATABASE_URL in the environment, take the
    development stack's settings from `.devdata/env` (DEVDATA), which `make run` writes."""
    if os.environ.get("DATABASE_URL") or os.environ.get("DATABASE_URL_FILE"):
        return
    import shlex
    from pathlib import Path

    path = Path(os.environ.get("DEVDATA", Path(__file__).resolve().parent / ".devdata")) / "env"
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            os.environ.setdefault(key, (shlex.split(value) or [""])[0])


def main() -> None:
    load_devdata_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
