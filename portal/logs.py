"""Logging of requests, as the operator reads it in `make run`'s output or a process's journal.

Django logs a refused request (PermissionDenied → 403, a bad request → 400) with the exception
attached, so every 403 printed a whole Python traceback although nothing went wrong in the
portal. A client error (4xx) is one line ("Forbidden (Permission denied): /path"); a server
error (5xx) keeps its traceback, which is what the operator needs to act on it. The filter sits
on the console handler that `django.request` and `django.security` write to (settings.LOGGING).
"""

from __future__ import annotations

import copy
import logging


class ClientErrorsOnOneLine(logging.Filter):
    """Drop the traceback of records about 4xx responses; keep everything else as it is."""

    def filter(self, record: logging.LogRecord) -> bool | logging.LogRecord:
        status = getattr(record, "status_code", None)
        if not (isinstance(status, int) and 400 <= status < 500) or not record.exc_info:
            return True
        # A copy: other handlers of the same record (a 500 never gets here) see it unchanged.
        one_line = copy.copy(record)
        one_line.exc_info = None
        one_line.exc_text = None
        return one_line
