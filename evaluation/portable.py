"""The exports without PostgreSQL: the same CSVs through the Django ORM, for any other database (SQLite in
``make run``).

Each export is a generator of rows from a queryset's ``.iterator()`` (never a list of all rows), written as
PostgreSQL's ``COPY ... WITH CSV HEADER`` writes them, so that both paths give byte-identical files
(``tests/evaluation/test_exports.py`` compares them on PostgreSQL for every export):
- NULL is an empty field, an empty string is ``""`` (Python's ``csv.writer`` of 3.11 cannot tell them apart,
  hence ``_field``), a field with a comma, a quote or a line break is quoted with doubled quotes;
- a float is written as PostgreSQL writes a ``double precision``: shortest round trip, no ``.0``;
- a JSON value as ``->>`` gives it: a string as is, a number, ``true``/``false``, JSON null as NULL;
- days since enrolment are whole days, rounded down, as ``floor(extract(epoch ...) / 86400)``.
The rows come in the SQL's order: the database sorts (the same ``order_by``), except the questions of one read,
which Python sorts by code point as the SQL's ``COLLATE "C"`` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Case as When_
from django.db.models import CharField, Min, Value, When

from diagnosis.models import Prediction
from evaluation import exports
from reading.models import Read, ReaderAssignment
from trials.models import Case, ReferenceStandard, Subject, Trial

BATCH = 2000
CHUNK_CHARS = 64 * 1024


def pg_float(value: float) -> str:
    """A float as PostgreSQL (12+, ``extra_float_digits`` 1) writes a ``double precision``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)  # the shortest string that reads back as the same float, as PostgreSQL's
    if "e" in text:
        return text
    if abs(value) >= 1e15:  # PostgreSQL turns to an exponent from 1e15, Python from 1e16
        return f"{Decimal(text).normalize():e}"
    return text.removesuffix(".0")


def _field(value: Any) -> str:
    if value is None:
        return ""
    text = pg_float(value) if isinstance(value, float) else str(value)
    if text == "" or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(values: Iterable[Any]) -> str:
    return ",".join(_field(v) for v in values) + "\n"


def json_text(value: Any) -> str | None:
    """What PostgreSQL's ``->>`` (and ``jsonb_each_text``) gives for a JSON value."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return pg_float(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def days(moment: datetime | None, enrolled: datetime) -> int | None:
    return None if moment is None else (moment - enrolled).days  # timedelta.days rounds down, as floor()


def case_label(pseudonym: str, laterality: str, visit_day: int) -> str:
    return f"{pseudonym}-{laterality}-D{visit_day}"


CASE_ORDER = ("case__subject__pseudonym", "case__visit_day", "case__laterality")


def reader_labels(trial: Trial) -> dict[Any, str]:
    """R01, R02... by each reader's first assignment in the trial (ties by id), as the SQL's ``readers``."""
    first = (
        ReaderAssignment.objects.filter(trial=trial)
        .values("reader_id")
        .annotate(first=Min("created_at"))
        .order_by("first", "reader_id")
    )
    return {row["reader_id"]: f"R{n:02d}" for n, row in enumerate(first, start=1)}


def _label_of(labels: dict[Any, str]) -> When_:
    """The reader's label in the query, so that the database sorts by it as the SQL does."""
    return When_(*(When(reader_id=pk, then=Value(label)) for pk, label in labels.items()), output_field=CharField())


def _subjects(trial: Trial) -> Iterator[tuple]:
    rows = (
        Subject.objects.filter(trial=trial)
        .order_by("pseudonym")
        .values_list(
            "pseudonym",
            "site__hospital__code",
            "sex",
            "age",
            "diabetes_type",
            "diabetes_duration_years",
            "status",
            "withdrawn_at",
            "enrolled_at",
        )
    )
    for *head, withdrawn_at, enrolled_at in rows.iterator(chunk_size=BATCH):
        yield (*head, days(withdrawn_at, enrolled_at))


def _cases(trial: Trial) -> Iterator[tuple]:
    rows = (
        Case.objects.filter(subject__trial=trial)
        .order_by("subject__pseudonym", "visit_day", "laterality")
        .values_list(
            "subject__pseudonym", "laterality", "visit_day", "status", "oct_rnfl_thickness_um", "calibration__id"
        )
    )
    for pseudonym, laterality, visit_day, status, rnfl, calibration in rows.iterator(chunk_size=BATCH):
        label = case_label(pseudonym, laterality, visit_day)
        yield (label, pseudonym, laterality, visit_day, status, rnfl, int(calibration is not None))


def _reads(trial: Trial) -> Iterator[tuple]:
    labels = reader_labels(trial)
    if not labels:
        return
    rows = (
        Read.objects.filter(case__subject__trial=trial, status="signed", reader_id__in=labels)
        .annotate(reader_label=_label_of(labels))
        .order_by("reader_label", "-phase", *CASE_ORDER)
        .values_list(
            "reader_label",
            "assignment__group",
            "phase",
            "case__subject__pseudonym",
            "case__laterality",
            "case__visit_day",
            "answers",
            "confidences",
            "signed_at",
            "case__subject__enrolled_at",
            "seconds_on_case",
            "version",
            "case__calibration__id",
        )
    )
    for row in rows.iterator(chunk_size=BATCH):
        label, group, phase, pseudonym, laterality, visit_day, answers, confidences = row[:8]
        signed_at, enrolled_at, seconds, version, calibration = row[8:]
        case = case_label(pseudonym, laterality, visit_day)
        tail = (days(signed_at, enrolled_at), seconds, version, int(calibration is not None))
        confidences = confidences if isinstance(confidences, dict) else {}
        for key in sorted(answers):  # code point order, as COLLATE "C"
            answer = json_text(answers[key])
            yield (label, group, phase, case, pseudonym, key, answer, json_text(confidences.get(key)), *tail)


def _predictions(trial: Trial) -> Iterator[tuple]:
    rows = (
        Prediction.objects.filter(case__subject__trial=trial)
        .order_by(*CASE_ORDER, "model_version__name", "model_version__version", "created_at")
        .values_list(
            "case__subject__pseudonym",
            "case__laterality",
            "case__visit_day",
            "model_version__name",
            "model_version__version",
            "model_version__task",
            "case_file__sha256",
            "kind",
            "grade",
            "referable_probability",
            "glaucoma_probability",
            "created_at",
            "case__subject__enrolled_at",
        )
    )
    for (
        pseudonym,
        laterality,
        visit_day,
        name,
        version,
        task,
        sha256,
        *middle,
        created_at,
        enrolled_at,
    ) in rows.iterator(chunk_size=BATCH):
        label = case_label(pseudonym, laterality, visit_day)
        file = sha256[:12] if sha256 else None
        yield (label, pseudonym, name, version, task, file, *middle, days(created_at, enrolled_at))


def _reference(trial: Trial) -> Iterator[tuple]:
    rows = (
        ReferenceStandard.objects.filter(case__subject__trial=trial)
        .order_by(*CASE_ORDER)
        .values_list(
            "case__subject__pseudonym", "case__laterality", "case__visit_day", "icdr_grade", "glaucoma", "source"
        )
    )
    for pseudonym, laterality, visit_day, grade, glaucoma, source in rows.iterator(chunk_size=BATCH):
        referable = None if grade is None else int(grade >= 2)
        yield (case_label(pseudonym, laterality, visit_day), pseudonym, grade, referable, glaucoma or None, source)


# question -> (the reference filter of a case with a truth, the truth of a reference row (grade, glaucoma)):
# ``exports.ANALYSES`` in Python.
ANALYSES: dict[str, tuple[dict[str, Any], Callable[[int | None, str], int]]] = {
    "referable_dr": ({"case__reference__icdr_grade__isnull": False}, lambda grade, _: int((grade or 0) >= 2)),
    "glaucoma": ({"case__reference__glaucoma__in": ["yes", "no"]}, lambda _, glaucoma: int(glaucoma == "yes")),
}


def rating(answer: str | None, confidence: Any) -> float:
    """50 + confidence/2 for yes, 50 - confidence/2 for no, 50 otherwise; a missing confidence counts as 100."""
    text = json_text(confidence)
    c = 100.0 if text is None else float(text)
    return 50 + c / 2 if answer == "yes" else 50 - c / 2 if answer == "no" else 50.0


def _analysis(trial: Trial, question: str) -> Iterator[tuple]:
    has_truth, truth = ANALYSES[question]
    labels = reader_labels(trial)
    if not labels:
        return
    rows = (
        Read.objects.filter(
            case__subject__trial=trial,
            status="signed",
            reader_id__in=labels,
            case__reference__isnull=False,
            case__calibration__isnull=True,
            answers__has_key=question,
            **has_truth,
        )
        .annotate(reader_label=_label_of(labels))
        .order_by("reader_label", "-phase", *CASE_ORDER)
        .values_list(
            "reader_label",
            "phase",
            "case__subject__pseudonym",
            "case__laterality",
            "case__visit_day",
            "case__reference__icdr_grade",
            "case__reference__glaucoma",
            "answers",
            "confidences",
        )
    )
    for label, phase, pseudonym, laterality, visit_day, grade, glaucoma, answers, confidences in rows.iterator(
        chunk_size=BATCH
    ):
        confidence = confidences.get(question) if isinstance(confidences, dict) else None
        answer = json_text(answers.get(question))
        yield (
            label,
            phase,
            case_label(pseudonym, laterality, visit_day),
            truth(grade, glaucoma),
            rating(answer, confidence),
        )


TABLES: dict[str, Callable[[Trial], Iterator[tuple]]] = {
    "subjects": _subjects,
    "cases": _cases,
    "reads": _reads,
    "predictions": _predictions,
    "reference": _reference,
    "analysis_referable_dr": lambda trial: _analysis(trial, "referable_dr"),
    "analysis_glaucoma": lambda trial: _analysis(trial, "glaucoma"),
}


def columns(name: str) -> list[str]:
    return [v.name for v in exports.DICTIONARY if v.export == name]


def orm_rows(name: str, trial: Trial) -> Iterator[bytes]:
    """The export's CSV through the ORM, header first, in chunks of about ``CHUNK_CHARS`` characters."""
    if name not in TABLES:
        raise KeyError(f"no export named {name!r}; exports: {', '.join(TABLES)}")
    buffer = [csv_line(columns(name))]
    size = len(buffer[0])
    for row in TABLES[name](trial):
        line = csv_line(row)
        buffer.append(line)
        size += len(line)
        if size >= CHUNK_CHARS:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()
