"""Logging filters. Pure: no Django imports."""

from __future__ import annotations

import logging
import re


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


class RedactInvitationTokens(logging.Filter):
    """Replace the one-time token in invitation links (``/accounts/invitations/<token>/``) in log lines: a logged
    path with a token that is still valid would let whoever reads the logs accept the invitation."""

    PATTERN = re.compile(r"(/accounts/invitations/)[^/\s\"?]+")

    def _redact(self, value: object) -> object:
        return self.PATTERN.sub(r"\1[redacted]", value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._redact(value) for key, value in record.args.items()}
        request = getattr(record, "request", None)
        if request is not None and hasattr(request, "path") and self.PATTERN.search(str(request.path)):
            record.request = None  # a formatter or handler would print it whole
        return True
