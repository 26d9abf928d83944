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

from diagnosis.models import ModelVersion, Prediction
from platform_core.accounts.models import Hospital
from reading.models import CalibrationCase, Read, ReaderAssignment, ReadingSetup
from trials.models import Case, ReferenceStandard, Subject, Trial, TrialSite

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
    # Analysable cases: not a hidden calibration case, not excluded; numbered 0.. in label order.
    return (
        "cases AS (SELECT c.id AS case_id, ROW_NUMBER() OVER (ORDER BY s.pseudonym, c.visit_day, c.laterality) - 1 "  # noqa: S608
        f"AS idx FROM {_t(Case)} c JOIN {_t(Subject)} s ON s.id = c.subject_id "
        f"LEFT JOIN {_t(CalibrationCase)} cc ON cc.case_id = c.id "
        "WHERE s.trial_id = %(trial)s AND cc.id IS NULL AND c.status <> 'excluded')"
    )


def _readers_cte() -> str:
    # The stable reader labels of the exports: order of first assignment in the trial.
    return (
        "readers AS (SELECT reader_id, ROW_NUMBER() OVER (ORDER BY MIN(created_at), reader_id) - 1 AS idx "  # noqa: S608
        f"FROM {_t(ReaderAssignment)} WHERE trial_id = %(trial)s GROUP BY reader_id)"
    )


def _call(key: str) -> str:
    answer = _json_text("r.answers", key)
    return f"CASE WHEN {answer} = 'yes' THEN 1 WHEN {answer} IN ('no', 'suspect') THEN 0 END"


def _rating(key: str) -> str:
    answer = _json_text("r.answers", key)
    confidence = f"COALESCE(CAST({_json_text('r.confidences', key)} AS DOUBLE PRECISION), 100)"
    return (
        f"CASE WHEN {answer} = 'yes' THEN 50 + {confidence} / 2 WHEN {answer} = 'no' THEN 50 - {confidence} / 2 "
        f"WHEN {answer} = 'suspect' THEN 50 END"
    )


def _fetch(sql: str, trial: Trial) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, {"trial": _trial_param(trial)})
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

    read_rows = _fetch(
        f"WITH {_cases_cte()}, {_readers_cte()} SELECT CASE r.phase WHEN 'aided' THEN 1 ELSE 0 END, rd.idx, cs.idx, "  # noqa: S608
        f"{_call('referable_dr')}, {_rating('referable_dr')}, "
        f"CAST({_json_text('r.answers', 'icdr_grade')} AS INTEGER), "
        f"{_call('glaucoma')}, {_rating('glaucoma')} "
        f"FROM {_t(Read)} r JOIN cases cs ON cs.case_id = r.case_id JOIN readers rd ON rd.reader_id = r.reader_id "
        "WHERE r.status = 'signed'",
        trial,
    )
    reads = _matrix(read_rows, 8)
    where = tuple(reads[:, :3].astype(int).T) if len(reads) else (np.array([], int),) * 3

    def tensor(column: int) -> np.ndarray:
        out = np.full((len(PHASES), r_count, n), np.nan)
        out[where] = reads[:, column]
        return out

    grade = tensor(5)
    calls = {
        "referable_dr": tensor(3),
        "icdr_grade": np.where(np.isnan(grade), np.nan, grade >= 2),
        "glaucoma": tensor(6),
    }
    ratings = {"referable_dr": tensor(4), "icdr_grade": grade, "glaucoma": tensor(7)}

    prediction_rows = _fetch(
        f"WITH {_cases_cte()}, "  # noqa: S608
        "latest AS (SELECT p.case_id, p.model_version_id, p.referable_probability, p.glaucoma_probability, p.grade, "
        "ROW_NUMBER() OVER (PARTITION BY p.case_id, p.model_version_id ORDER BY p.created_at DESC) AS rn "
        f"FROM {_t(Prediction)} p JOIN cases cs ON cs.case_id = p.case_id WHERE p.kind = 'prediction'), "
        "models AS (SELECT model_version_id, ROW_NUMBER() OVER (ORDER BY MIN(m.name), MIN(m.version)) - 1 AS idx "
        f"FROM latest JOIN {_t(ModelVersion)} m ON m.id = latest.model_version_id GROUP BY model_version_id) "
        "SELECT md.idx, cs.idx, l.referable_probability, l.glaucoma_probability, l.grade, "
        f"m.name || ' ' || m.version FROM latest l JOIN cases cs ON cs.case_id = l.case_id "
        f"JOIN models md ON md.model_version_id = l.model_version_id JOIN {_t(ModelVersion)} m "
        "ON m.id = l.model_version_id WHERE l.rn = 1 ORDER BY md.idx",
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
    )


def calibration_reads(trial: Trial) -> np.ndarray:
    """Signed reads of hidden calibration cases in signing order: an array of (reader index, 1 when the read agrees
    with every known answer of the case else 0), compared key by key in SQL."""
    if connection.vendor == "postgresql":
        keys, answer, value = "jsonb_each_text(cc.known_answers) k", "(r.answers ->> k.key)", "k.value"
    else:
        keys = "json_each(cc.known_answers) k"
        answer = "CAST(json_extract(r.answers, '$.' || k.key) AS TEXT)"
        value = "CAST(k.value AS TEXT)"
    rows = _fetch(
        f"WITH {_readers_cte()} SELECT rd.idx, CASE WHEN EXISTS (SELECT 1 FROM {keys} "  # noqa: S608
        f"WHERE COALESCE({answer}, '') <> {value}) THEN 0 ELSE 1 END "
        f"FROM {_t(Read)} r JOIN {_t(CalibrationCase)} cc ON cc.case_id = r.case_id "
        f"JOIN readers rd ON rd.reader_id = r.reader_id JOIN {_t(Case)} c ON c.id = r.case_id "
        f"JOIN {_t(Subject)} s ON s.id = c.subject_id "
        "WHERE s.trial_id = %(trial)s AND r.status = 'signed' ORDER BY rd.idx, r.signed_at",
        trial,
    )
    return _matrix(rows, 2)


def reading_counts(trial: Trial, readers: int) -> np.ndarray:
    """(P, R, 2): signed and draft reads per phase and reader (calibration cases included: they are read too)."""
    rows = _fetch(
        f"WITH {_readers_cte()} SELECT CASE r.phase WHEN 'aided' THEN 1 ELSE 0 END, rd.idx, "  # noqa: S608
        "SUM(CASE WHEN r.status = 'signed' THEN 1 ELSE 0 END), SUM(CASE WHEN r.status = 'draft' THEN 1 ELSE 0 END) "
        f"FROM {_t(Read)} r JOIN {_t(ReaderAssignment)} a ON a.id = r.assignment_id "
        "JOIN readers rd ON rd.reader_id = r.reader_id WHERE a.trial_id = %(trial)s GROUP BY r.phase, rd.idx",
        trial,
    )
    found = _matrix(rows, 4).astype(int)
    counts = np.zeros((len(PHASES), readers, 2), dtype=int)
    counts[found[:, 0], found[:, 1]] = found[:, 2:]
    return counts
