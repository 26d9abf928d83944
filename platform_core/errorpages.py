"""The error pages (400, 403, 404, 500, 503): branded, with the navigation and what to do next.

Under ``/api/`` the same errors answer in the API's error envelope (``platform_core.api.exceptions``), because
clients parse JSON there. The 500 page is rendered without the request's context processors: whatever failed
(the database, say) must not fail the error page too. A request that failed because the database could not be
reached or dropped its connection (PostgreSQL restarting) is a 503 that says to try again, not a 500: the next
request reconnects (``CONN_HEALTH_CHECKS``), without restarting Visus.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from platform_core.accounts.models import Role
from platform_core.accounts.selectors import roles_of

logger = logging.getLogger(__name__)

API_MESSAGES = {
    400: ("bad_request", "The request could not be understood."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "There is no such API endpoint or object."),
    500: ("server_error", "The server failed to handle this request; it was logged."),
    503: (
        "database_unavailable",
        "The database is not available at the moment (it may be restarting). Try again in a minute; if you were "
        "saving something, check whether it was saved first.",
    ),
}
# Seconds a client is asked to wait before trying again after a 503.
RETRY_AFTER_SECONDS = 30


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _api_error(status: int) -> JsonResponse:
    from platform_core.api.exceptions import error_body

    code, message = API_MESSAGES[status]
    return JsonResponse(error_body(status_code=status, code=code, message=message), status=status)


def _page(request: HttpRequest | None, template: str, status: int, context: dict[str, Any]) -> HttpResponse:
    return HttpResponse(loader.render_to_string(template, context, request=request), status=status)


def _message(exception: Exception | None) -> str:
    """The message a view raised with (``PermissionDenied("Your role ...")``); never a technical repr."""
    if exception is None or not exception.args:
        return ""
    message = exception.args[0]
    return message if isinstance(message, str) else ""


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _api_error(400)
    return _page(request, "errors/400.html", 400, {})


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _api_error(403)
    user = getattr(request, "user", None)
    roles = roles_of(user) if user is not None and user.is_authenticated else set()
    context = {
        "reason": _message(exception),
        "signed_in": bool(user is not None and user.is_authenticated),
        # A reader opening a case or subject URL (a link from a colleague, an old bookmark): cases are read from
        # the worklist, blinded; the case pages are for the sites.
        "reads_from_worklist": str(Role.READER) in roles,
    }
    return _page(request, "errors/403.html", 403, context)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _api_error(404)
    # The path is not echoed: it may name a subject of another site (site isolation answers 404 there).
    return _page(request, "errors/404.html", 404, {})


def database_unavailable(exc: BaseException | None) -> bool:
    """True when ``exc`` says the database could not be reached or went away, not that a statement failed.

    PostgreSQL (psycopg2): no SQLSTATE at all (connection refused, closed or reset) or a connection-exception (08)
    or operator-intervention (57P: shutting down, starting up) class. A deadlock, a statement timeout or a lock that
    was not granted is an error of the request (500), and so is SQLite's "no such table" (a bug, not an outage);
    SQLite's unavailable is a locked or unopenable database file."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if cause is None:
        return False
    if type(cause).__module__.startswith("sqlite3"):
        text = str(cause)
        return "database is locked" in text or "unable to open database" in text
    pgcode = getattr(cause, "pgcode", "")
    return pgcode is None or str(pgcode).startswith(("08", "57P"))


def _database_unavailable() -> bool:
    """The request is failing because the database connection could not be made or was lost (Django's handler500
    runs while the view's exception is being handled, so it is still the current one)."""
    return database_unavailable(sys.exc_info()[1])


def server_error(request: HttpRequest) -> HttpResponse:
    status = 503 if _database_unavailable() else 500
    if _is_api(request):
        response: HttpResponse = _api_error(status)
    else:
        response = _page(None, f"errors/{status}.html", status, {})
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
