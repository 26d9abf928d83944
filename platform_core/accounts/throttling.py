"""Failed sign-ins per client address (the page and the API), on top of the per-account lock-out.

Counts live in Django's default cache. The embedded mode uses the per-process LocMemCache, so each process
counts on its own; a production deployment with several processes should configure a shared cache (Redis,
``CACHES``) so that the limit holds across them. The client address is found as DRF's throttles find it
(``REST_FRAMEWORK["NUM_PROXIES"]``), so a forged X-Forwarded-For header is not trusted.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

logger = logging.getLogger(__name__)

THROTTLED_MESSAGE = "Too many failed sign-ins from your network address. Wait %(minutes)s minute(s) and try again."


def _limits() -> tuple[int, int]:
    """(failed sign-ins allowed, window in seconds) per client address."""
    return (
        # Generous: a hospital's staff often share one address (NAT); the account lock-out limits guessing per
        # account, this limits spraying across accounts.
        getattr(settings, "VISUS_LOGIN_FAILURES_PER_ADDRESS", 100),
        getattr(settings, "VISUS_LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60),
    )


def _address(request: HttpRequest | Request) -> str:
    """The client address as DRF's throttles see it (X-Forwarded-For behind the proxy); pages pass Django's
    request, the API DRF's. Empty when the server passed none (no REMOTE_ADDR, as over a Unix socket): such
    requests then share one count, instead of failing the sign-in."""
    return BaseThrottle().get_ident(request if isinstance(request, Request) else Request(request)) or ""


def client_address(request: HttpRequest | Request) -> str:
    """The client's address as the throttles see it (behind the proxies of ``NUM_PROXIES``)."""
    return _address(request)


def _key(request: HttpRequest | Request) -> str:
    return f"visus:login-failures:{_address(request)}"


def failed_logins_exceeded(request: HttpRequest | Request) -> bool:
    allowed, _ = _limits()
    try:
        exceeded = int(cache.get(_key(request), 0)) >= allowed
    except Exception:  # the cache (Redis) is down: sign-ins go on, the account lock-out still holds
        logger.warning("Sign-in throttle unavailable (cache error); allowing the attempt", exc_info=True)
        return False
    if exceeded:
        logger.warning("Sign-in refused: too many failed sign-ins from %s", _address(request))
    return exceeded


def failed_login_note(request: HttpRequest | Request) -> None:
    _, window = _limits()
    key = _key(request)
    try:
        cache.add(key, 0, timeout=window)  # the window runs from the first failure
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
    except Exception:  # see failed_logins_exceeded
        logger.warning("Sign-in throttle unavailable (cache error); failure not counted", exc_info=True)


class FailOpenScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, but a cache outage lets the request through (logged) instead of answering 500."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("API throttle unavailable (cache error); allowing the request", exc_info=True)
            return True


def throttled_message() -> str:
    _, window = _limits()
    return THROTTLED_MESSAGE % {"minutes": max(1, window // 60)}
