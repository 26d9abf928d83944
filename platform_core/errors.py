"""Errors the domain raises, free of DRF so that services, selectors and commands import without it.

The API maps them to its error envelope (``platform_core.api.exceptions.api_exception_handler``); pages and
commands show their message.
"""

from __future__ import annotations


class ApplicationError(Exception):
    """A business rule refused the action (closed trial, missing consent...). Maps to 400 or ``status``."""

    def __init__(self, message: str, *, code: str = "refused", status: int = 400, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.extra = extra or {}
