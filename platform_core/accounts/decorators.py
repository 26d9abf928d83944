"""Explicit permissions for page views."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from platform_core.accounts.models import Role
from platform_core.accounts.requests import signed_in_user
from platform_core.accounts.selectors import roles_of


def role_required(*roles: Role) -> Callable:
    """The signed-in user must hold one of ``roles`` somewhere; otherwise 403."""
    wanted = {str(r) for r in roles}

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not roles_of(signed_in_user(request)) & wanted:
                raise PermissionDenied("Your role does not give access to this page.")
            return view(request, *args, **kwargs)

        wrapped.required_roles = frozenset(wanted)  # type: ignore[attr-defined]
        return wrapped

    return decorator
