"""Pages call services; a service's refusal becomes the form's errors (nothing was written)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from platform_core.errors import ApplicationError


def refusal_on_form(form: forms.Form, exc: ApplicationError | ValidationError) -> None:
    """Put a service's refusal on ``form``: a field's error on that field, anything else at the top."""
    if isinstance(exc, ApplicationError):
        form.add_error(None, exc.message)
    elif hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            target = field if field in form.fields else None
            for error in errors:
                form.add_error(target, error)
    else:
        for error in exc.messages:
            form.add_error(None, error)


def run_service(form: forms.Form, call: Callable[[], Any]) -> Any | None:
    """Call a service; put its refusal on the form and return None."""
    try:
        return call()
    except (ApplicationError, ValidationError) as exc:
        refusal_on_form(form, exc)
    return None
