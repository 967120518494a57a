#!/usr/bin/env python
import os
import sys

if sys.version_info < (3, 12):  # noqa: UP036 - say so plainly instead of a SyntaxError deep in Django
    sys.exit(f"Python 3.12 or newer is required (this is {sys.version.split()[0]}); use .venv/bin/python")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
