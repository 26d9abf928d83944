"""Data queries (monitoring): a monitor raises a query on a case or one of its files, the site's coordinator
answers, the monitor closes it or reopens it. Each step is atomic, adds a note and writes its audit event."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from platform_core import limits
from platform_core.accounts.models import Role, User
from platform_core.accounts.selectors import user_has_role
from platform_core.audit.services import audit_snapshot, audited_save
from platform_core.errors import ApplicationError
from trials.models import (
    Case,
    CaseFile,
    DataQuery,
    DataQueryNote,
    DataQueryNoteKind,
    DataQueryStatus,
)
from trials.selectors import ai_blinded_trial_ids, trial_roles
from trials.states import require_allowed

MAX_TEXT = limits.TEXT


def _require_monitor(actor: User, case: Case) -> None:
    trial = case.subject.trial
    if Role.MONITOR not in trial_roles(actor, trial) or ai_blinded_trial_ids(actor).filter(pk=trial.pk).exists():
        raise ApplicationError("Only a monitor of this trial may do this.", code="forbidden", status=403)


def _require_site_coordinator(actor: User, case: Case) -> None:
    if not user_has_role(actor, Role.COORDINATOR, hospital=case.subject.site.hospital):
        raise ApplicationError("Only a coordinator of this case's site may answer.", code="forbidden", status=403)


def _text(value: str, field: str, message: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ValidationError({field: message})
    if len(text) > MAX_TEXT:
        raise ValidationError({field: f"Keep it under {MAX_TEXT} characters."})
    return text


def _lock(query: DataQuery) -> DataQuery:
    return (
        DataQuery.objects.select_for_update(no_key=True, of=("self",))
        .select_related("case__subject__trial", "case__subject__site__hospital")
        .get(pk=query.pk)
    )


def _save_step(query: DataQuery, *, actor: User, kind: str, action: str, note: str, before=None, reason: str = ""):
    case = query.case
    audited_save(
        query,
        actor=actor,
        action=action,
        before=before,
        reason=reason,
        trial_ref=case.subject.trial.slug,
        hospital_code=case.subject.site.hospital.code,
        extra_changes={"note": [None, note]} if note and kind != DataQueryNoteKind.RAISE else None,
    )
    DataQueryNote.objects.create(query=query, kind=kind, author=actor, text=note)
    return query


@transaction.atomic
def data_query_raise(*, actor: User, case: Case, text: str, case_file: CaseFile | None = None) -> DataQuery:
    """Open a query. The same open question on the same case and file twice (a double submit) is refused."""
    case = Case.objects.select_related("subject__trial", "subject__site__hospital").get(pk=case.pk)
    _require_monitor(actor, case)
    require_allowed("data_query.raise", case.subject.trial)
    text = _text(text, "text", "Write the question for the site.")
    if case_file is not None and case_file.case_id != case.pk:
        raise ValidationError({"case_file": "The file belongs to another case."})
    duplicate = DataQuery.objects.filter(case=case, case_file=case_file, text=text).exclude(
        status=DataQueryStatus.CLOSED
    )
    if duplicate.exists():
        raise ApplicationError("This query is already open on this case.", code="duplicate_query")
    query = DataQuery(case=case, case_file=case_file, raised_by=actor, text=text, status=DataQueryStatus.OPEN)
    return _save_step(query, actor=actor, kind=DataQueryNoteKind.RAISE, action="data_query.raise", note=text)


@transaction.atomic
def data_query_answer(*, actor: User, query: DataQuery, text: str) -> DataQuery:
    query = _lock(query)
    _require_site_coordinator(actor, query.case)
    require_allowed("data_query.answer", query.case.subject.trial)
    if query.status != DataQueryStatus.OPEN:
        raise ApplicationError(
            f"This query is {query.get_status_display().lower()}: there is nothing to answer.", code="query_not_open"
        )
    text = _text(text, "text", "Write the answer for the monitor.")
    before = audit_snapshot(query)
    query.status = DataQueryStatus.ANSWERED
    return _save_step(
        query, actor=actor, kind=DataQueryNoteKind.ANSWER, action="data_query.answer", note=text, before=before
    )


@transaction.atomic
def data_query_close(*, actor: User, query: DataQuery, note: str = "") -> DataQuery:
    query = _lock(query)
    _require_monitor(actor, query.case)
    require_allowed("data_query.close", query.case.subject.trial)
    if query.status == DataQueryStatus.CLOSED:
        raise ApplicationError("This query is already closed.", code="query_closed")
    before = audit_snapshot(query)
    query.status = DataQueryStatus.CLOSED
    return _save_step(
        query, actor=actor, kind=DataQueryNoteKind.CLOSE, action="data_query.close", note=note.strip(), before=before
    )


@transaction.atomic
def data_query_reopen(*, actor: User, query: DataQuery, reason: str) -> DataQuery:
    query = _lock(query)
    _require_monitor(actor, query.case)
    require_allowed("data_query.raise", query.case.subject.trial)
    if query.status == DataQueryStatus.OPEN:
        raise ApplicationError("This query is already open.", code="query_open")
    reason = _text(reason, "reason", "Give the reason for reopening the query.")
    before = audit_snapshot(query)
    query.status = DataQueryStatus.OPEN
    return _save_step(
        query,
        actor=actor,
        kind=DataQueryNoteKind.REOPEN,
        action="data_query.reopen",
        note=reason,
        before=before,
        reason=reason,
    )
