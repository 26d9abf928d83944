"""What each trial state allows, and what a withdrawn subject stops: one table, checked by every write to a trial's
sites, subjects, cases and files (issue 13: a closed trial was still writable in places).

- draft: the protocol is being written: sites may be added; nobody is enrolled yet.
- recruiting: subjects are enrolled and their cases collected.
- reading: enrolment has stopped; the sites finish their cases (files, completion, queries) while readers read.
- closed: nothing changes any more (data queries may still be answered and closed, to finish monitoring).

A withdrawn subject keeps their data, but gets no new case, file, measurement or change of case state.
"""

from __future__ import annotations

from typing import Final

from platform_core.errors import ApplicationError
from trials.models import Subject, Trial, TrialStatus

DRAFT, RECRUITING, READING, CLOSED = (
    TrialStatus.DRAFT,
    TrialStatus.RECRUITING,
    TrialStatus.READING,
    TrialStatus.CLOSED,
)

# The write (an audit action, or a family of them) -> the trial states that allow it.
ALLOWED: Final[dict[str, frozenset[str]]] = {
    "site.add": frozenset({DRAFT, RECRUITING, READING}),
    "site.change": frozenset({DRAFT, RECRUITING, READING}),
    "subject.enroll": frozenset({RECRUITING}),
    "subject.withdraw": frozenset({RECRUITING, READING}),
    "case.create": frozenset({RECRUITING, READING}),
    "case.status": frozenset({RECRUITING, READING}),
    "case.rnfl": frozenset({RECRUITING, READING}),
    "case_file.upload": frozenset({RECRUITING, READING}),
    "case_file.retire": frozenset({RECRUITING, READING}),
    "data_query.raise": frozenset({RECRUITING, READING}),
    "data_query.answer": frozenset({RECRUITING, READING, CLOSED}),
    "data_query.close": frozenset({RECRUITING, READING, CLOSED}),
}
# Writes a withdrawn subject stops (their data stays as it was).
STOPPED_BY_WITHDRAWAL: Final[frozenset[str]] = frozenset(
    {"subject.withdraw", "case.create", "case.status", "case.rnfl", "case_file.upload", "case_file.retire"}
)
WHAT: Final[dict[str, str]] = {
    "site.add": "add sites",
    "site.change": "change its sites",
    "subject.enroll": "enrol subjects",
    "subject.withdraw": "withdraw subjects",
    "case.create": "add cases",
    "case.status": "complete, reopen or exclude cases",
    "case.rnfl": "record OCT measurements",
    "case_file.upload": "add files",
    "case_file.retire": "withdraw or replace files",
    "data_query.raise": "raise data queries",
    "data_query.answer": "answer data queries",
    "data_query.close": "close data queries",
}


def require_allowed(action: str, trial: Trial, subject: Subject | None = None) -> None:
    """Refuse (409, ``trial_state`` or ``subject_withdrawn``) a write the trial's state or the subject's
    withdrawal does not allow. ``action`` must be in ``ALLOWED``."""
    allowed = ALLOWED[action]
    if trial.status not in allowed:
        raise ApplicationError(
            f"Trial {trial.protocol_number} is {trial.get_status_display().lower()}: it is not possible to "
            f"{WHAT[action]} now.",
            code="trial_state",
            status=409,
        )
    if subject is not None and subject.is_withdrawn and action in STOPPED_BY_WITHDRAWAL:
        raise ApplicationError(
            f"{subject.pseudonym} is withdrawn: it is not possible to {WHAT[action]} for them; their data is kept.",
            code="subject_withdrawn",
            status=409,
        )
