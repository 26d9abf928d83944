import csv
import json
from collections.abc import Iterator
from datetime import UTC

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from platform_core.accounts.decorators import role_required
from platform_core.accounts.models import User
from platform_core.accounts.requests import signed_in_user
from platform_core.audit.forms import AuditFilterForm
from platform_core.audit.models import AuditEvent
from platform_core.audit.selectors import (
    AUDIT_ROLES,
    AuditFilters,
    UnknownAuditObject,
    audit_events_filtered,
    audit_label,
    audit_object_filters,
)
from platform_core.audit.services import audit_trail_export_record

EXPORT_BATCH = 500


def _filtered(request: HttpRequest) -> tuple[AuditFilterForm, AuditFilters | None, QuerySet[AuditEvent]]:
    """The filter form, its filters (None when the form is invalid) and the events (none when invalid)."""
    user = signed_in_user(request)
    form = AuditFilterForm(request.GET or None, user=user)
    if request.GET and not form.is_valid():
        return form, None, AuditEvent.objects.none()
    filters = form.filters() if request.GET else AuditFilters()
    try:
        return form, filters, audit_events_filtered(user, filters)
    except UnknownAuditObject as exc:
        label = next((f.label for f in audit_object_filters() if f.name == exc.name), exc.name)
        form.add_error(exc.name, f"No {label.lower()} {exc.value!r} in the trails you may review.")
        return form, None, AuditEvent.objects.none()


@role_required(*AUDIT_ROLES)
@require_GET
def event_list(request: HttpRequest) -> HttpResponse:
    form, filters, events = _filtered(request)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    audit_label(signed_in_user(request), list(page.object_list))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audit/event_list.html",
        {"page": page, "form": form, "filtered": bool(filters and filters.as_record()), "query": query.urlencode()},
    )


def _csv_text(value: object) -> str:
    """A cell as text; a leading =, +, - or @ is quoted so that no spreadsheet runs it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value: str) -> str:
        return value


EXPORT_HEADER = ["seq", "when_utc", "person", "person_email", "action", "object_type", "object", "site", "trial"]
EXPORT_HEADER += ["changes", "reason"]


def _export_rows(user: User, events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_HEADER)
    batch: list[AuditEvent] = []
    for event in events.iterator(chunk_size=EXPORT_BATCH):
        batch.append(event)
        if len(batch) == EXPORT_BATCH:
            yield from _export_batch(writer, user, batch)
            batch = []
    yield from _export_batch(writer, user, batch)


def _export_batch(writer, user: User, batch: list[AuditEvent]) -> Iterator[str]:
    for e in audit_label(user, batch):
        changes = (
            f"redacted (see event #{e.redacted_by_seq})"
            if e.is_redacted
            else json.dumps(e.changes, ensure_ascii=False, sort_keys=True)
        )
        row = [e.seq, e.occurred_at.astimezone(UTC).isoformat(), e.actor.full_name if e.actor else "system"]
        row += [e.actor_email, e.action, e.object_type, e.object_link.label, e.hospital_code, e.trial_ref]  # type: ignore[attr-defined]
        yield writer.writerow([_csv_text(v) for v in [*row, changes, e.reason]])


@role_required(*AUDIT_ROLES)
@require_GET
def event_export(request: HttpRequest) -> HttpResponseBase:
    """The filtered events as CSV, streamed. The export itself is an audited action (audit_trail.export)."""
    form, filters, events = _filtered(request)
    if filters is None:
        page = Paginator(events, 50).get_page(1)
        return render(request, "audit/event_list.html", {"page": page, "form": form, "query": ""}, status=400)
    user = signed_in_user(request)
    audit_trail_export_record(actor=user, filters=filters.as_record(), count=events.count())
    response = StreamingHttpResponse(_export_rows(user, events), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response
