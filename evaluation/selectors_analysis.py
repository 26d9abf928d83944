"""The data of a trial's analyses, read in a few aggregate SQL queries and handed over as numpy arrays.

Readers, cases and model versions are numbered in the database (``ROW_NUMBER()``), JSON answers are turned into
numbers there (a yes/no call, a 0-100 rating, a grade), and each query's rows go straight into a numpy array: no
model instances, no Python loop over reads. Only signed reads count; hidden calibration cases and excluded cases
are left out of everything but the calibration-drift query. The SQL runs on PostgreSQL and on SQLite (``make
run``): the only difference is how a JSON key is read (``_json_text``).

The rating of a yes/no question is the one of the analysis exports (``evaluation.exports``): yes 50 + confidence/2,
no 50 - confidence/2, a missing confidence counts as 100; glaucoma "suspect" is 50 and counts as not positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import Count, Q

from diagnosis.models import ModelVersion, Prediction
from platform_core.accounts.models import Hospital
from reading.models import CalibrationCase, Read, ReaderAssignment, ReadingSetup
from trials.models import Case, CaseStatus, ReferenceStandard, Subject, SubjectStatus, Trial, TrialSite

PHASES = ("unaided", "aided")
# Age bands of the subgroup breakdown (lower bounds; "90+" counts as 90).
AGE_BANDS = ((0, "under 40"), (40, "40-59"), (60, "60-74"), (75, "75 and over"))


def _t(model) -> str:
    return model._meta.db_table


def _json_text(column: str, key: str) -> str:
    """The text of ``column[key]`` (a JSON object column), NULL when absent."""
    if connection.vendor == "postgresql":
        return f"({column} ->> '{key}')"
    return f"CAST(json_extract({column}, '$.{key}') AS TEXT)"


def _trial_param(trial: Trial) -> Any:
    return Trial._meta.pk.get_db_prep_value(trial.pk, connection)


def _cases_cte() -> str:
    # Analysable cases: not a hidden calibration case, not excluded; numbered 0.. in label order. NOT EXISTS (an
    # anti-join) rather than LEFT JOIN ... IS NULL, which PostgreSQL estimates at one row and then loops over.
    return (
        "cases AS (SELECT c.id AS case_id, ROW_NUMBER() OVER (ORDER BY s.pseudonym, c.visit_day, c.laterality) - 1 "  # noqa: S608
        f"AS idx FROM {_t(Case)} c JOIN {_t(Subject)} s ON s.id = c.subject_id "
        f"WHERE s.trial_id = %(trial)s AND c.status <> 'excluded' "
        f"AND NOT EXISTS (SELECT 1 FROM {_t(CalibrationCase)} cc WHERE cc.case_id = c.id))"
    )


def _readers_cte() -> str:
    # The stable reader labels of the exports: order of first assignment in the trial.
    return (
        "readers AS (SELECT reader_id, ROW_NUMBER() OVER (ORDER BY MIN(created_at), reader_id) - 1 AS idx "  # noqa: S608
        f"FROM {_t(ReaderAssignment)} WHERE trial_id = %(trial)s GROUP BY reader_id)"
    )


def _answer(key: str) -> str:
    """A yes/no(/suspect) answer and its confidence in one number (fewer values to fetch): yes +(confidence + 1),
    no -(confidence + 1), suspect 0, NULL when not answered; a missing confidence counts as 100. Each JSON key is
    read once (``decode_answers`` turns the number back into a call and a rating)."""
    confidence = f"COALESCE(CAST({_json_text('r.confidences', key)} AS DOUBLE PRECISION), 100) + 1"
    answer = _json_text("r.answers", key)
    return f"CASE {answer} WHEN 'yes' THEN 1 WHEN 'no' THEN -1 WHEN 'suspect' THEN 0 END * ({confidence})"


def decode_answers(coded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The call (1 yes, 0 no or suspect, nan unanswered) and the 0-100 rating (yes 50 + confidence/2, no
    50 - confidence/2, suspect 50) of answers coded by ``_answer``."""
    call = np.where(np.isnan(coded), np.nan, coded > 0)
    rating = 50 + np.sign(coded) * np.maximum(np.abs(coded) - 1, 0) / 2
    return call, rating


def _grade(key: str) -> str:
    return f"CAST({_json_text('r.answers', key)} AS INTEGER)"


def _fetch(sql: str, trial: Trial, **params: int) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, {"trial": _trial_param(trial), **params})
        return cursor.fetchall()


def _matrix(rows: list[tuple], columns: int) -> np.ndarray:
    """Rows of numbers (None for NULL) as a float array (nan for NULL)."""
    if not rows:
        return np.empty((0, columns))
    return np.array(rows, dtype=float).reshape(len(rows), columns)


@dataclass
class TrialData:
    """Everything the analyses need, indexed by case (N), reader (R), phase (P = 2) and model version (M)."""

    readers: list[dict[str, Any]]  # label, group (of the first phase they were assigned), phases
    cases: int
    case_site: np.ndarray  # (N,) str
    case_sex: np.ndarray
    case_age_band: np.ndarray
    case_diabetes: np.ndarray
    ref_grade: np.ndarray  # (N,) float, nan without a reference grade
    ref_glaucoma: np.ndarray  # (N,) 1 yes, 0 no, nan suspect or none
    has_reference: np.ndarray  # (N,) bool
    calls: dict[str, np.ndarray]  # question -> (P, R, N): 1 positive, 0 negative, nan not read
    ratings: dict[str, np.ndarray]  # question -> (P, R, N)
    models: list[str]
    model_scores: dict[str, np.ndarray]  # question -> (M, N)
    model_probability: dict[str, bool]  # question -> the model's score is a probability
    reference_locked: bool
    crossing: str | None
    aided_phase: bool
    reads: int
    read_counts: np.ndarray  # (P, R, 2): signed and draft reads, calibration cases included
    calibration: np.ndarray  # (K, 4) reads of calibration cases: phase, reader, agrees 0/1, signed 0/1


def trial_data(trial: Trial) -> TrialData:
    """Load the trial's analysable data (see the module docstring)."""
    case_rows = _fetch(
        f"WITH {_cases_cte()} SELECT cs.idx, h.code, s.sex, s.diabetes_type, "  # noqa: S608
        "CASE WHEN s.age = '90+' THEN 90 ELSE CAST(s.age AS INTEGER) END, ref.icdr_grade, "
        "CASE ref.glaucoma WHEN 'yes' THEN 1 WHEN 'no' THEN 0 END, CASE WHEN ref.id IS NULL THEN 0 ELSE 1 END "
        f"FROM cases cs JOIN {_t(Case)} c ON c.id = cs.case_id JOIN {_t(Subject)} s ON s.id = c.subject_id "
        f"JOIN {_t(TrialSite)} ts ON ts.id = s.site_id JOIN {_t(Hospital)} h ON h.id = ts.hospital_id "
        f"LEFT JOIN {_t(ReferenceStandard)} ref ON ref.case_id = c.id ORDER BY cs.idx",
        trial,
    )
    n = len(case_rows)
    table = np.array(case_rows, dtype=object).reshape(n, 8)
    text = table[:, 1:4]
    numbers = _matrix(table[:, 4:].tolist(), 4)
    ages = numbers[:, 0]
    bounds = np.array([b for b, _ in AGE_BANDS])
    band_labels = np.array([label for _, label in AGE_BANDS], dtype=object)
    age_band = band_labels[np.clip(np.searchsorted(bounds, ages, side="right") - 1, 0, len(bounds) - 1)]

    assignment_rows = _fetch(
        f'WITH {_readers_cte()} SELECT rd.idx, a.phase, a."group" FROM {_t(ReaderAssignment)} a '  # noqa: S608
        "JOIN readers rd ON rd.reader_id = a.reader_id WHERE a.trial_id = %(trial)s ORDER BY rd.idx, a.created_at",
        trial,
    )
    readers: list[dict[str, Any]] = []
    for idx, phase, group in assignment_rows:  # one row per assignment: at most two per reader
        if idx == len(readers):
            readers.append({"label": f"R{idx + 1:02d}", "group": group, "phases": []})
        readers[idx]["phases"].append(phase)
    r_count = len(readers)

    def asked(key: str, column) -> str:
        """The column of a question of the trial's reading form; NULL for one it does not ask (not read at all)."""
        return column(key) if key in trial.reading_form else "NULL"

    # One row per read of an analysable case, four numbers: its place (phase, reader, case) in one integer, negative
    # for a draft; the coded referable and glaucoma answers; the grade.
    read_rows = _fetch(
        f"WITH {_cases_cte()}, {_readers_cte()} SELECT CASE r.status WHEN 'signed' THEN 1 ELSE -1 END * "  # noqa: S608
        "(((CASE r.phase WHEN 'aided' THEN 1 ELSE 0 END) * %(readers)s + rd.idx) * %(cases)s + cs.idx + 1), "
        f"{asked('referable_dr', _answer)}, {asked('glaucoma', _answer)}, {asked('icdr_grade', _grade)} "
        f"FROM {_t(Read)} r JOIN cases cs ON cs.case_id = r.case_id JOIN readers rd ON rd.reader_id = r.reader_id",
        trial,
        readers=r_count,
        cases=n,
    )
    every_read = _matrix(read_rows, 4)
    signed = every_read[:, 0] > 0
    place = np.abs(every_read[:, 0]).astype(np.int64) - 1
    calibration = calibration_reads(trial)
    # Signed and draft reads per phase and reader, calibration cases included (they are read too).
    counts = np.zeros((len(PHASES), r_count, 2), dtype=int)
    if len(place):
        np.add.at(counts, (place // (r_count * n), place // n % r_count, (~signed).astype(int)), 1)
    found = calibration.astype(int)
    np.add.at(counts, (found[:, 0], found[:, 1], 1 - found[:, 3]), 1)
    reads = every_read[signed]  # the analyses count signed reads only

    def tensor(values: np.ndarray) -> np.ndarray:
        out = np.full(len(PHASES) * r_count * n, np.nan)
        out[place[signed]] = values
        return out.reshape(len(PHASES), r_count, n)

    referable_call, referable_rating = decode_answers(reads[:, 1])
    glaucoma_call, glaucoma_rating = decode_answers(reads[:, 2])
    grade = tensor(reads[:, 3])
    calls = {
        "referable_dr": tensor(referable_call),
        "icdr_grade": np.where(np.isnan(grade), np.nan, grade >= 2),
        "glaucoma": tensor(glaucoma_call),
    }
    ratings = {"referable_dr": tensor(referable_rating), "icdr_grade": grade, "glaucoma": tensor(glaucoma_rating)}

    prediction_rows = _fetch(
        f"WITH {_cases_cte()} SELECT model, idx, referable, glaucoma, grade, label FROM ("  # noqa: S608
        "SELECT DENSE_RANK() OVER (ORDER BY m.name, m.version) - 1 AS model, cs.idx, "
        "p.referable_probability AS referable, p.glaucoma_probability AS glaucoma, p.grade, "
        "m.name || ' ' || m.version AS label, "
        "ROW_NUMBER() OVER (PARTITION BY p.case_id, p.model_version_id ORDER BY p.created_at DESC) AS rn "
        f"FROM {_t(Prediction)} p JOIN cases cs ON cs.case_id = p.case_id "
        f"JOIN {_t(ModelVersion)} m ON m.id = p.model_version_id WHERE p.kind = 'prediction') latest "
        "WHERE rn = 1 ORDER BY model",
        trial,
    )
    found = np.array(prediction_rows, dtype=object).reshape(len(prediction_rows), 6)
    predictions = _matrix(found[:, :5].tolist(), 5)
    _, first = np.unique(predictions[:, 0].astype(int), return_index=True)
    models = [str(label) for label in found[first, 5]]

    def scores(column: int) -> np.ndarray:
        out = np.full((len(models), n), np.nan)
        out[predictions[:, 0].astype(int), predictions[:, 1].astype(int)] = predictions[:, column]
        return out

    setup = ReadingSetup.objects.filter(trial=trial).only("crossing", "aided_phase", "reference_locked_at").first()
    return TrialData(
        readers=readers,
        cases=n,
        case_site=text[:, 0],
        case_sex=text[:, 1],
        case_diabetes=text[:, 2],
        case_age_band=age_band,
        ref_grade=numbers[:, 1],
        ref_glaucoma=numbers[:, 2],
        has_reference=numbers[:, 3] == 1,
        calls=calls,
        ratings=ratings,
        models=models,
        model_scores={"referable_dr": scores(2), "icdr_grade": scores(4), "glaucoma": scores(3)},
        model_probability={"referable_dr": True, "icdr_grade": False, "glaucoma": True},
        reference_locked=bool(setup and setup.reference_locked_at),
        crossing=setup.crossing if setup else None,
        aided_phase=bool(setup and setup.aided_phase),
        reads=len(reads),
        read_counts=counts,
        calibration=calibration,
    )


def calibration_reads(trial: Trial) -> np.ndarray:
    """Reads of hidden calibration cases, each reader's in signing order (drafts last): an array of (phase, reader
    index, 1 when the read agrees with every known answer of the case else 0, 1 when signed else 0); the answers
    are compared with the known ones key by key in SQL."""
    if connection.vendor == "postgresql":
        keys, answer, value = "jsonb_each_text(cc.known_answers) k", "(r.answers ->> k.key)", "k.value"
    else:
        keys = "json_each(cc.known_answers) k"
        answer = "CAST(json_extract(r.answers, '$.' || k.key) AS TEXT)"
        value = "CAST(k.value AS TEXT)"
    rows = _fetch(
        f"WITH {_readers_cte()} SELECT CASE r.phase WHEN 'aided' THEN 1 ELSE 0 END, rd.idx, "  # noqa: S608
        f"CASE WHEN EXISTS (SELECT 1 FROM {keys} WHERE COALESCE({answer}, '') <> {value}) THEN 0 ELSE 1 END, "
        "CASE r.status WHEN 'signed' THEN 1 ELSE 0 END "
        f"FROM {_t(Read)} r JOIN {_t(CalibrationCase)} cc ON cc.case_id = r.case_id "
        f"JOIN readers rd ON rd.reader_id = r.reader_id JOIN {_t(Case)} c ON c.id = r.case_id "
        f"JOIN {_t(Subject)} s ON s.id = c.subject_id "
        "WHERE s.trial_id = %(trial)s ORDER BY rd.idx, r.signed_at IS NULL, r.signed_at",
        trial,
    )
    return _matrix(rows, 4)


def readable_cases(trial: Trial) -> int:
    """Cases there are to read in each phase: complete cases of enrolled subjects (calibration cases included)."""
    return Case.objects.filter(
        subject__trial=trial, status=CaseStatus.COMPLETE, subject__status=SubjectStatus.ENROLLED
    ).count()


def site_accrual(trial: Trial) -> list[dict[str, Any]]:
    """Per site (by hospital code): enrolment target, subjects enrolled (withdrawn ones included) and withdrawn."""
    rows = (
        TrialSite.objects.filter(trial=trial)
        .values("hospital__code", "enrolment_target")
        .annotate(
            enrolled=Count("subjects"),
            withdrawn=Count("subjects", filter=Q(subjects__status=SubjectStatus.WITHDRAWN)),
        )
        .order_by("hospital__code")
    )
    return [
        {
            "site": r["hospital__code"],
            "target": r["enrolment_target"],
            "enrolled": r["enrolled"],
            "withdrawn": r["withdrawn"],
        }
        for r in rows
    ]
