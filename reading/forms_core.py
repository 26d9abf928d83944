"""Checking a read's answers and confidences against a trial's reading form (pure; no Django)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from trials.reading_form import CATALOGUE

# Questions that are answers in themselves, not diagnoses that carry a 0-100 confidence.
NOT_DIAGNOSTIC = {"confidence", "lesion_marks"}


def diagnostic_questions(form: list[str]) -> list[str]:
    """The trial's questions that each get a 0-100 confidence (so that each reader has an ROC curve)."""
    return [key for key in form if key in CATALOGUE and key not in NOT_DIAGNOSTIC]


def answer_questions(form: list[str]) -> list[str]:
    """The trial's questions answered with a value (lesion marks are recorded as marks)."""
    return [key for key in form if key in CATALOGUE and key != "lesion_marks"]


def check_answers(
    form: list[str], answers: Mapping[str, Any], confidences: Mapping[str, Any], *, complete: bool
) -> dict[str, str]:
    """``{question: message}`` for every problem; empty when the answers fit the form. ``complete``: every
    question answered and every diagnostic question given a confidence (as signing needs)."""
    errors: dict[str, str] = {}
    if not isinstance(answers, Mapping) or not isinstance(confidences, Mapping):
        return {"answers": "Answers and confidences must be objects keyed by question."}
    allowed = set(answer_questions(form))
    for key in answers:
        if key not in allowed:
            errors[str(key)] = f"{key!r} is not a question of this trial's reading form."
    for key in confidences:
        if key not in diagnostic_questions(form):
            errors[f"confidence:{key}"] = f"{key!r} is not a diagnostic question of this trial's reading form."
    for key in answer_questions(form):
        question = CATALOGUE[key]
        value = answers.get(key)
        if value is None or value == "":
            if complete:
                errors[key] = f"Answer {question.label!r}."
            continue
        if question.kind in ("choice", "boolean"):
            if str(value) not in {c[0] for c in question.choices}:
                errors[key] = f"{value!r} is not an answer to {question.label!r}."
        elif question.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                errors[key] = f"{question.label!r} takes a whole number."
            elif (question.minimum is not None and value < question.minimum) or (
                question.maximum is not None and value > question.maximum
            ):
                errors[key] = f"{question.label!r} runs from {question.minimum} to {question.maximum}."
    for key in diagnostic_questions(form):
        value = confidences.get(key)
        if value is None or value == "":
            if complete:
                errors[f"confidence:{key}"] = f"Give your confidence (0-100) for {CATALOGUE[key].label!r}."
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            errors[f"confidence:{key}"] = f"Confidence for {CATALOGUE[key].label!r} is a whole number from 0 to 100."
    return errors


def _grade(answers: Mapping[str, Any]) -> int | None:
    value = answers.get("icdr_grade")
    return int(value) if value not in (None, "") else None


def _referable(answers: Mapping[str, Any]) -> bool | None:
    if answers.get("referable_dr") in ("yes", "no"):
        return answers["referable_dr"] == "yes"
    grade = _grade(answers)
    return None if grade is None else grade >= 2


def discordance(reads: list[Mapping[str, Any]], *, grade_gap: int = 2) -> list[str]:
    """Why these signed reads of one case disagree (empty when they agree): referable discordance, DR grades
    ``grade_gap`` or more apart, or a yes and a no for glaucoma."""
    reasons = []
    referable = {r for r in (_referable(a) for a in reads) if r is not None}
    if len(referable) > 1:
        reasons.append("referable discordance")
    grades = [g for g in (_grade(a) for a in reads) if g is not None]
    if grades and max(grades) - min(grades) >= grade_gap:
        reasons.append(f"grades {min(grades)} and {max(grades)} are {max(grades) - min(grades)} apart")
    glaucoma = {a.get("glaucoma") for a in reads} & {"yes", "no"}
    if len(glaucoma) > 1:
        reasons.append("glaucoma yes and no")
    return reasons


def majority(reads: list[Mapping[str, Any]], question: str) -> tuple[Any, bool]:
    """``(answer, tie)`` of one question over signed reads: the answer more than half of the reads that answer the
    question give (``tie`` False), or ``(None, True)`` when none does (a tie); ``(None, False)`` when no read
    answers it."""
    values = [str(a[question]) for a in reads if a.get(question) not in (None, "")]
    if not values:
        return None, False
    answer, count = Counter(values).most_common(1)[0]
    if count * 2 > len(values):
        return answer, False
    return None, True
