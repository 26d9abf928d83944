"""Idle logoff: a session unused for VISUS_IDLE_TIMEOUT_MINUTES is ended on its next request."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

SESSION_KEY = "visus_last_activity"


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
                if request.path.startswith("/api/"):
                    return self.get_response(request)
                messages.info(
                    request,
                    f"You were signed out after {settings.VISUS_IDLE_TIMEOUT_MINUTES} minutes of inactivity.",
                )
                return redirect(f"{reverse('accounts:login')}?next={request.path}")
            request.session[SESSION_KEY] = now
        return self.get_response(request)
