"""Management commands speak the operator's language, consistently: English unless the
operator's locale (LANGUAGE, then LC_ALL, LC_MESSAGES, LANG, as gettext reads them) names a
language the portal has. Without this, a command printed the portal's default language (Korean)
for messages that come from services and English for its own lines.

Django itself leaves commands in settings.LANGUAGE_CODE (Korean) whatever the locale says, so
every command of ours derives from OperatorCommand, and writes its own lines with gettext /
ngettext (named placeholders), translated in locale/ko like the pages."""

from __future__ import annotations

import os
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import translation
from django.utils.translation import gettext as _

from portal.progress import elapsed_text

FALLBACK = "en"


def operator_language(environ: dict[str, str] | None = None) -> str:
    """The first language of the operator's locale that the portal offers, else English."""
    environ = os.environ if environ is None else environ
    offered = {code for code, _name in settings.LANGUAGES}
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(variable, "")
        if not value:
            continue
        for entry in value.split(":"):  # LANGUAGE may list several: "ko:en"
            code = entry.split(".")[0].split("@")[0].split("_")[0].lower()
            if code in offered:
                return code
        return FALLBACK  # the first variable set decides, as in gettext ("C", "POSIX", "de_DE": English)
    return FALLBACK


class OperatorCommand(BaseCommand):
    """A command whose every message (its own and the services') is in the operator's language."""

    _began: float = 0.0

    def execute(self, *args, **options):
        self._began = time.monotonic()
        with translation.override(operator_language()):
            return super().execute(*args, **options)

    def progress(self, n: int, total: int, text: str) -> None:
        """`[n/N] text (elapsed)`: a command doing long work says how far it has gone."""
        self.stdout.write(f"[{n}/{total}] {text} ({self.elapsed()})")

    def done(self) -> str:
        """`Done in 4.2 s.`: a command's last line."""
        return _("Done in %(elapsed)s.") % {"elapsed": self.elapsed()}

    def elapsed(self) -> str:
        return elapsed_text(time.monotonic() - (self._began or time.monotonic()))
