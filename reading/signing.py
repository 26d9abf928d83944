"""Which e-signatures ask for the full credentials (21 CFR 11.200(a)(1)(i)-(ii)): the first signing of a session
of controlled access gives the e-mail address and the password, later signings in that session the password only.

The fact that the signed-in user has signed is kept with the session: in the Django session for pages and for
session-authenticated API calls, and in the cache (for the token's maximum age) for an API token, which is the
API's session. Signing out ends the session and with it the fact, so the next session's first signing asks for
the full credentials again.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache

from platform_core.accounts.models import ApiToken
from platform_core.accounts.services import api_token_lifetimes

SESSION_KEY = "reading_signed_by"
FIRST_SIGNATURE_MESSAGE = "The first signature of a session gives your e-mail address as well as your password."


def _token(request: Any) -> ApiToken | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


def _marker(request: Any) -> tuple[str, Any]:
    token = _token(request)
    if token is not None:
        return "cache", f"reading-signed:{token.pk}"
    return "session", SESSION_KEY


def identity_required(request: Any) -> bool:
    """Whether this signing is the session's first, which asks for the e-mail address as well as the password."""
    where, key = _marker(request)
    user_pk = str(request.user.pk)
    if where == "cache":
        return cache.get(key) != user_pk
    session = getattr(request, "session", None)
    return session is None or session.get(key) != user_pk


def signed(request: Any) -> None:
    """Remember that the signed-in user has signed in this session (after a signing succeeded)."""
    where, key = _marker(request)
    if where == "cache":
        cache.set(key, str(request.user.pk), int(api_token_lifetimes()[1].total_seconds()))
    elif getattr(request, "session", None) is not None:
        request.session[key] = str(request.user.pk)
