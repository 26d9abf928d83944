"""The signed-in user of a request, typed: what views behind a login check read instead of `request.user`."""

from __future__ import annotations

from typing import Protocol

from django.core.exceptions import PermissionDenied

from platform_core.accounts.models import User


class HasUser(Protocol):
    """A Django HttpRequest or a DRF Request."""

    @property
    def user(self) -> object: ...


def signed_in_user(request: HasUser) -> User:
    """`request.user` as a `User`, for views that already required a login (login_required, role_required,
    DRF's IsAuthenticated). Anonymous here is a wiring mistake: refused with a 403, never served."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("Sign in to see this page.")
    return user
