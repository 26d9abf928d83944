"""Logging filters. Pure: no Django imports."""

from __future__ import annotations

import logging


class ClientErrorsWithoutTraceback(logging.Filter):
    """Keep a 4xx response's log line but drop its traceback.

    Django logs every PermissionDenied (403) and Http404 with the exception's traceback at WARNING: a signed-in
    user could fill the logs with tracebacks by requesting forbidden URLs, and the traceback says nothing an
    operator needs (the line keeps the path and status). Server errors (5xx) keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True
