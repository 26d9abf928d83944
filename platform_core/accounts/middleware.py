"""Idle logoff: a session unused for VISUS_IDLE_TIMEOUT_MINUTES is ended on its next request.

Background requests (polls made by page scripts, marked with the ``X-Visus-Background: 1`` header) are held to
the timeout but are not activity: a page left open on a running job does not keep its session alive.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers

SESSION_KEY = "visus_last_activity"
BACKGROUND_HEADER = "X-Visus-Background"


def is_background(request: HttpRequest) -> bool:
    return request.headers.get(BACKGROUND_HEADER, "").strip() == "1"


class IdleTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            now = timezone.now().timestamp()
            last = request.session.get(SESSION_KEY)
            if last is not None and now - float(last) > settings.VISUS_IDLE_TIMEOUT_MINUTES * 60:
                logout(request)
                message = f"You were signed out after {settings.VISUS_IDLE_TIMEOUT_MINUTES} minutes of inactivity."
                if request.path.startswith("/api/"):
                    if is_background(request):  # the page reloads on the 401 and shows why
                        messages.info(request, message)
                    return self.get_response(request)
                messages.info(request, message)
                return redirect(f"{reverse('accounts:login')}?next={request.path}")
            if last is None or not is_background(request):
                request.session[SESSION_KEY] = now
        return self.get_response(request)


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every response that may carry trial data.

    That is every response to a signed-in user (pages, downloads) and every API response (a token caller is
    signed in only inside the view, and an error envelope is never worth caching), so that neither a shared proxy
    nor the browser's disk cache keeps a copy after sign-out. Static files are answered earlier by WhiteNoise
    with their own long cache. A response that already chose its caching keeps it only if it is no-store too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if request.path.startswith("/api/") or (user is not None and user.is_authenticated):
            response["Cache-Control"] = "no-store, private"
            response["Pragma"] = "no-cache"
            patch_vary_headers(response, ("Cookie", "Authorization"))
        return response
