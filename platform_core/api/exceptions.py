"""One error format for every API error.

``{"error": {"status": 400, "code": "validation_error", "message": "...", "fields": {...}}}``
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

# Re-exported: the old import path (``platform_core.api.exceptions.ApplicationError``) keeps working.
from platform_core.errors import ApplicationError

__all__ = ["ApplicationError", "api_exception_handler", "error_body"]


def _django_validation_fields(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {("non_field_errors" if k == "__all__" else k): v for k, v in exc.message_dict.items()}
    return {"non_field_errors": exc.messages}


def _first_message(fields: Any) -> str:
    if isinstance(fields, dict):
        for value in fields.values():
            message = _first_message(value)
            if message:
                return message
    if isinstance(fields, list) and fields:
        return _first_message(fields[0])
    return str(fields) if fields else ""


def error_body(*, status_code: int, code: str, message: str, fields: Any = None, extra: dict | None = None) -> dict:
    body: dict[str, Any] = {"status": status_code, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    if extra:
        body.update(extra)
    return {"error": body}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(status_code=exc.status, code=exc.code, message=exc.message, extra=exc.extra),
            status=exc.status,
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_fields(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body(
            status_code=status.HTTP_400_BAD_REQUEST,
            code="validation_error",
            message=_first_message(fields) or "The request is not valid.",
            fields=fields,
        )
    else:
        detail = getattr(exc, "detail", str(exc))
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        response.data = error_body(
            status_code=response.status_code,
            code=code if isinstance(code, str) else "error",
            message=str(detail),
        )
    return response
