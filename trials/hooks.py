"""Extension points that trials offers to the apps above it.

Trials must not import diagnosis (or any higher layer), yet completing a case queues inference and the case
page shows the AI panel. So trials calls what higher apps register here, from their ``AppConfig.ready()``:

- ``case_completed``: callbacks ``(*, case)`` run by ``case_set_status`` when a case becomes complete, inside the same
  transaction (an exception in one rolls the completion back);
- ``case_page_panels``: sections of the case page, each a template and a function that gives its context
  (the function owns any scoping, blinding included);
- ``reference_lock_checks``: callbacks ``(*, trial) -> str | None`` that say why a trial's reference standard is
  locked (None: not locked). ``reference_standard_record`` refuses imported labels while one says so (reading
  registers its reference-standard lock here).

Registering the same callback or panel twice keeps one (``ready()`` may run more than once in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trials.models import Case, Trial

CaseCompleted = Callable[..., object]  # (*, case) -> ignored


@dataclass(frozen=True)
class CasePagePanel:
    """A section of the case page: ``template`` is included with the page's context plus ``context(...)``."""

    name: str
    template: str
    context: Callable[..., dict[str, Any]]  # (*, user, case) -> template context


ReferenceLockCheck = Callable[..., object]  # (*, trial) -> why the reference standard is locked, or None

_case_completed: list[CaseCompleted] = []
_reference_lock_checks: list[ReferenceLockCheck] = []
_case_page_panels: dict[str, CasePagePanel] = {}


def on_case_completed(callback: CaseCompleted) -> CaseCompleted:
    """Register ``callback(case=case)`` to run when a case becomes complete (usable as a decorator)."""
    if callback not in _case_completed:
        _case_completed.append(callback)
    return callback


def case_completed(case: Case) -> None:
    """Run the registered callbacks; the caller holds the transaction that completes the case."""
    for callback in list(_case_completed):
        callback(case=case)


def register_case_page_panel(panel: CasePagePanel) -> None:
    _case_page_panels[panel.name] = panel


def case_page_panels() -> list[CasePagePanel]:
    return list(_case_page_panels.values())


def on_reference_lock_check(check: ReferenceLockCheck) -> ReferenceLockCheck:
    """Register ``check(trial=trial)``: a message when the trial's reference standard is locked, else None."""
    if check not in _reference_lock_checks:
        _reference_lock_checks.append(check)
    return check


def reference_locked(trial: Trial) -> str | None:
    """Why the trial's reference standard is locked (the first registered check that says so), or None."""
    for check in list(_reference_lock_checks):
        why = check(trial=trial)
        if why:
            return str(why)
    return None


# The completeness grid's AI column (monitoring): trials cannot read inference jobs, so diagnosis registers a
# function ``(*, user, trial, case_ids) -> {case_id: status}`` (``status`` one of AI_STATUSES), or None when the
# user is blinded to the trial's AI output (the column then says so).
CaseAiStatus = Callable[..., "dict[Any, str] | None"]
AI_STATUSES = {"succeeded": "Read by AI", "running": "Running", "queued": "Queued", "failed": "Failed"}
_case_ai_status: list[CaseAiStatus] = []


def register_case_ai_status(provider: CaseAiStatus) -> None:
    if provider not in _case_ai_status:
        _case_ai_status.clear()  # one provider: the last app to register it
        _case_ai_status.append(provider)


def case_ai_status(*, user: Any, trial: Any, case_ids: list[Any]) -> dict[Any, str] | None:
    """The AI status of each case (cases without a job are absent); {} when no app provides one."""
    if not _case_ai_status:
        return {}
    return _case_ai_status[0](user=user, trial=trial, case_ids=case_ids)
