"""Failed sign-ins per client address (the page and the API), on top of the per-account lock-out.

Counts live in Django's default cache. The embedded mode uses the per-process LocMemCache, so each process
counts on its own; a production deployment with several processes should configure a shared cache (Redis,
``CACHES``) so that the limit holds across them. The client address is found as DRF's throttles find it
(``REST_FRAMEWORK["NUM_PROXIES"]``), so a forged X-Forwarded-For header is not trusted.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

THROTTLED_MESSAGE = "Too many failed sign-ins from your network address. Wait %(minutes)s minute(s) and try again."


def _limits() -> tuple[int, int]:
    """(failed sign-ins allowed, window in seconds) per client address."""
    return (
        getattr(settings, "VISUS_LOGIN_FAILURES_PER_ADDRESS", 20),
        getattr(settings, "VISUS_LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60),
    )


def _key(request: HttpRequest) -> str:
    return f"visus:login-failures:{BaseThrottle().get_ident(request)}"


def failed_logins_exceeded(request: HttpRequest) -> bool:
    allowed, _ = _limits()
    return int(cache.get(_key(request), 0)) >= allowed


def failed_login_note(request: HttpRequest) -> None:
    _, window = _limits()
    key = _key(request)
    cache.add(key, 0, timeout=window)  # the window runs from the first failure
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)


def throttled_message() -> str:
    _, window = _limits()
    return THROTTLED_MESSAGE % {"minutes": max(1, window // 60)}
