"""The API description for people and for tools: the schema, its browsable docs, and the error envelope in it.

- Signed-out people opening the docs (or the schema in a browser) are sent to the sign-in page and back, instead
  of a bare "401 Unauthorized"; API clients still get 401 in the error envelope.
- A browser opening ``/api/schema/`` sees it as text (YAML, or JSON with ``?format=json``) instead of downloading
  a file of an unknown type; clients that ask for ``application/vnd.oai.openapi`` (or json) get that.
- ``error_envelope_hook`` adds the error envelope (``platform_core.api.exceptions.error_body``) as the schema of
  every error response of every operation: 400, 401, 403, 404 and 503 (the database unreachable) everywhere, 409 on
  every write (its state refused it), 415 where there is a request body, and the ones a view declares itself (429
  for sign-in, 413 for uploads).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated


def _wants_page(request: HttpRequest) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _to_sign_in(request: Any, exc: Exception) -> HttpResponse | None:
    """The sign-in page (and back here) for a signed-out person; None for anything else."""
    if isinstance(exc, NotAuthenticated | AuthenticationFailed):
        return redirect_to_login(request.get_full_path())
    return None


class YamlTextRenderer(OpenApiYamlRenderer):
    media_type = "text/plain"
    charset = "utf-8"


class JsonTextRenderer(OpenApiJsonRenderer):
    media_type = "text/plain"
    charset = "utf-8"


class SchemaView(SpectacularAPIView):
    def handle_exception(self, exc: Exception) -> Any:
        # A browser is sent to sign in; an API client (not asking for a page) gets 401 in the envelope.
        if _wants_page(self.request):
            response = _to_sign_in(self.request, exc)
            if response is not None:
                return response
        return super().handle_exception(exc)

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        if _wants_page(request):
            if request.query_params.get("format") == "json":
                return JsonTextRenderer(), JsonTextRenderer.media_type
            if request.query_params.get("format") in (None, "yaml"):
                return YamlTextRenderer(), YamlTextRenderer.media_type
        return super().perform_content_negotiation(request, force)


class DocsView(SpectacularSwaggerSplitView):
    def handle_exception(self, exc: Exception) -> Any:
        return _to_sign_in(self.request, exc) or super().handle_exception(exc)


ERROR_STATUSES = {
    "400": "The request was refused: invalid input (``validation_error``, with ``fields``) or a business rule "
    "(``refused`` and other codes).",
    "401": "Not signed in, or the token is unknown, expired or revoked (``not_authenticated``, "
    "``authentication_failed``).",
    "403": "Signed in, but this role may not do this (``permission_denied``).",
    "404": "No such object, or not one this user may see (``not_found``).",
}

# A write can also be refused because of the state it finds (trials.states, a read's version or signature, a
# locked reference standard): 409, nothing changed. Writes that touch no trial state are listed here.
CONFLICT_STATUS = (
    "409",
    "Refused because of the state it found: a closed trial, a withdrawn subject, a stale ``version``, a signed "
    "read, a locked reference standard, a duplicate submission... (``trial_closed``, ``stale`` and other codes); "
    "nothing was changed.",
)
# A body in a media type the operation does not read (or that does not parse as its declared type): 415.
UNSUPPORTED_MEDIA_STATUS = (
    "415",
    "The body's media type is not one this operation reads (``unsupported_media_type``): send JSON, or the "
    "media types listed for the request body.",
)
# Any operation while the database cannot be reached (restarting, connection lost): 503 with Retry-After.
UNAVAILABLE_STATUS = (
    "503",
    "The database cannot be reached just now (``database_unavailable``; the file store for uploads: "
    "``storage_unavailable``): nothing was changed; try again after ``Retry-After`` seconds.",
)
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
WRITES_WITHOUT_CONFLICT = frozenset({"auth_token_create"})

ERROR_ENVELOPE = {
    "type": "object",
    "description": "Every API error has this shape: one object under ``error``.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer", "description": "the HTTP status, repeated", "example": 400},
                "code": {"type": "string", "description": "a stable machine-readable code", "example": "refused"},
                "message": {"type": "string", "description": "what went wrong, for a person to read"},
                "fields": {
                    "type": "object",
                    "description": "validation errors only: the messages for each input field "
                    "(``non_field_errors`` for the whole input)",
                    "additionalProperties": {},
                },
            },
            "additionalProperties": True,
        }
    },
}


def error_envelope_hook(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular postprocessing hook: the error envelope as the response of every error of every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["ErrorEnvelope"] = ERROR_ENVELOPE
    ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            statuses = dict(ERROR_STATUSES)
            statuses[UNAVAILABLE_STATUS[0]] = UNAVAILABLE_STATUS[1]
            if method in WRITE_METHODS and operation.get("operationId") not in WRITES_WITHOUT_CONFLICT:
                statuses[CONFLICT_STATUS[0]] = CONFLICT_STATUS[1]
            if "requestBody" in operation:
                statuses[UNSUPPORTED_MEDIA_STATUS[0]] = UNSUPPORTED_MEDIA_STATUS[1]
            # The errors a view declares itself (with their description) answer in the envelope too.
            for status in responses:
                if status.isdigit() and int(status) >= 400:
                    statuses.setdefault(status, "")
            for status, description in statuses.items():
                responses[status] = {
                    "description": responses.get(status, {}).get("description") or description,
                    "content": {"application/json": {"schema": ref}},
                }
    return result
