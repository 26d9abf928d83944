"""Cross-checks between a trial's eligibility checklist and the facts recorded about a subject at enrolment.

Criteria are free text written by the trial's manager, so only wording that is unambiguous is read: an age floor
("Age 18 years or over", "aged 40+", "Adult") and diabetes ("Diabetes mellitus type 1 or 2"). A contradiction is
reported on the subject field it concerns, all at once, so that the coordinator corrects the record (or the
checklist) before anything is stored. Pure: no database, used by the enrolment form and ``subject_enroll``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NO_DIABETES = "none"
DIABETES_KNOWN = {"type1", "type2", "other"}

_AGE_FLOOR = re.compile(
    r"\bage[ds]?\s*(?:of\s*)?(\d{1,3})\s*(?:years?|yrs?|y)?\s*(?:\+|or\s+(?:over|older|above)|and\s+(?:over|older|above))",
    re.IGNORECASE,
)
_AGE_AT_LEAST = re.compile(r"\bage[ds]?\s*(?:>=|≥|at\s+least)\s*(\d{1,3})", re.IGNORECASE)
_ADULT = re.compile(r"^\s*adults?\b", re.IGNORECASE)
_DIABETES = re.compile(r"\bdiabet", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:no|not|without|non)\b", re.IGNORECASE)


def minimum_age(criterion: str) -> int | None:
    """The youngest age a criterion admits, when it states one plainly; None otherwise."""
    match = _AGE_FLOOR.search(criterion) or _AGE_AT_LEAST.search(criterion)
    if match:
        return int(match.group(1))
    if _ADULT.search(criterion):
        return 18
    return None


def requires_diabetes(criterion: str) -> bool:
    """An inclusion criterion that asks for diabetes ("Diabetes mellitus type 1 or 2"), not its absence."""
    return bool(_DIABETES.search(criterion)) and not _NEGATED.search(criterion)


def subject_fact_problems(
    *,
    inclusion: list[str],
    exclusion: list[str],
    answers: Mapping[str, Any],
    age: int | None,
    diabetes_type: str | None,
    diabetes_duration_years: int | None,
) -> dict[str, list[str]]:
    """Contradictions between the answered checklist and the subject's facts, by subject field name.

    ``answers`` maps criterion text to True (yes) or False (no); unanswered criteria are not cross-checked.
    """
    problems: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    for criterion in inclusion:
        if answers.get(criterion) is not True:
            continue
        floor = minimum_age(criterion)
        if floor is not None and age is not None and age < floor:
            add("age", f"Age {age} contradicts the inclusion criterion “{criterion}”, answered yes.")
        if requires_diabetes(criterion) and diabetes_type == NO_DIABETES:
            add(
                "diabetes_type",
                f"“No diabetes” contradicts the inclusion criterion “{criterion}”, answered yes: "
                "record the subject's diabetes type.",
            )
    for criterion in exclusion:
        if answers.get(criterion) is False and requires_diabetes(criterion) and diabetes_type in DIABETES_KNOWN:
            add(
                "diabetes_type",
                f"A subject with diabetes meets the exclusion criterion “{criterion}”, answered no.",
            )
    if diabetes_duration_years is not None:
        if diabetes_type == NO_DIABETES:
            add("diabetes_duration_years", "A subject with no diabetes has no diabetes duration: leave it empty.")
        elif age is not None and diabetes_duration_years > age:
            add(
                "diabetes_duration_years",
                f"Diabetes for {diabetes_duration_years} years is longer than the subject's age ({age}).",
            )
    return problems
