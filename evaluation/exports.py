"""Exports for statisticians (issue 12, item 5): one CSV per table, a data dictionary and loading snippets.

What every export promises, and where it is kept:
- labels, never primary keys: subjects by pseudonym, cases as ``PSEUDONYM-EYE-Dvisit_day``, readers by a
  stable label (``R01``, ``R02``... in the order they were first assigned in the trial), models by name and
  version; no names, e-mail addresses or UUIDs;
- no calendar dates: times are whole days since the subject's enrolment (``*_day`` columns);
- only signed reads; the analysis CSVs (``reader,modality,case,truth,rating`` of ``analyze_reads``) also leave
  out hidden calibration cases and cases without a reference standard;
- every column of every export is described in ``DICTIONARY`` (variable, type, allowed values, description,
  as a REDCap data dictionary); ``tests/evaluation/test_exports.py`` checks the headers against it.

The SQL is PostgreSQL's (``jsonb_each_text``, ``COPY``); ``evaluation.services.export_chunks`` streams it there,
and ``evaluation.portable`` gives the same bytes through the ORM on any other database (SQLite).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from django.db import models

from diagnosis.models import ModelVersion, Prediction, ResultKind
from platform_core.accounts.models import Hospital
from reading.models import CalibrationCase, Phase, Read, ReaderAssignment
from trials.models import (
    Case,
    CaseFile,
    CaseStatus,
    DiabetesType,
    Laterality,
    ReferenceSource,
    ReferenceStandard,
    Sex,
    Subject,
    SubjectStatus,
    TrialSite,
)


@dataclass(frozen=True)
class Variable:
    export: str
    name: str
    type: str  # text, integer, number, categorical
    allowed: str  # REDCap style: "code, label | code, label", or a range, or ""
    description: str


def choices(enum: type[models.TextChoices]) -> str:
    """REDCap's allowed values of a categorical field: ``code, label | code, label``."""
    return " | ".join(f"{value}, {label}" for value, label in enum.choices)


YES_NO = "0, no | 1, yes"
PHASES = choices(Phase)


def _t(name: str) -> str:
    return {
        "subject": Subject._meta.db_table,
        "case": Case._meta.db_table,
        "site": TrialSite._meta.db_table,
        "hospital": Hospital._meta.db_table,
        "read": Read._meta.db_table,
        "assignment": ReaderAssignment._meta.db_table,
        "calibration": CalibrationCase._meta.db_table,
        "reference": ReferenceStandard._meta.db_table,
        "prediction": Prediction._meta.db_table,
        "model": ModelVersion._meta.db_table,
        "file": CaseFile._meta.db_table,
    }[name]


# The SQL below is assembled from constants only (table names from the models, fixed question keys); the one
# value, the trial, is always a bound parameter: hence the S608 exemptions.
CASE_LABEL = "(s.pseudonym || '-' || c.laterality || '-D' || c.visit_day)"


def _days(column: str) -> str:
    return f"floor(extract(epoch from ({column} - s.enrolled_at)) / 86400)::int"


def _readers_cte() -> str:
    # A stable label per reader of the trial: the order of their first assignment (ties by id, never shown).
    return (
        "readers AS (SELECT reader_id, 'R' || lpad((row_number() OVER (ORDER BY min(created_at), reader_id))::text, "  # noqa: S608
        f"2, '0') AS label FROM {_t('assignment')} WHERE trial_id = %(trial)s GROUP BY reader_id)"
    )


def _subjects_sql() -> str:
    return (
        f"SELECT s.pseudonym AS subject, h.code AS site, s.sex, s.age, s.diabetes_type, s.diabetes_duration_years, "  # noqa: S608
        f"s.status, {_days('s.withdrawn_at')} AS withdrawn_day "
        f"FROM {_t('subject')} s JOIN {_t('site')} ts ON ts.id = s.site_id "
        f"JOIN {_t('hospital')} h ON h.id = ts.hospital_id "
        "WHERE s.trial_id = %(trial)s ORDER BY s.pseudonym"
    )


def _cases_sql() -> str:
    return (
        f'SELECT {CASE_LABEL} AS "case", s.pseudonym AS subject, c.laterality, c.visit_day, c.status, '  # noqa: S608
        f"c.oct_rnfl_thickness_um, (cc.id IS NOT NULL)::int AS calibration "
        f"FROM {_t('case')} c JOIN {_t('subject')} s ON s.id = c.subject_id "
        f"LEFT JOIN {_t('calibration')} cc ON cc.case_id = c.id "
        "WHERE s.trial_id = %(trial)s ORDER BY s.pseudonym, c.visit_day, c.laterality"
    )


def _reads_sql() -> str:
    return (
        f"WITH {_readers_cte()} "  # noqa: S608
        f'SELECT rd.label AS reader, a."group" AS reader_group, r.phase, {CASE_LABEL} AS "case", '
        "s.pseudonym AS subject, q.key AS question, q.value AS answer, r.confidences ->> q.key AS confidence, "
        f"{_days('r.signed_at')} AS signed_day, r.seconds_on_case, r.version AS read_version, "
        "(cc.id IS NOT NULL)::int AS calibration "
        f"FROM {_t('read')} r JOIN {_t('assignment')} a ON a.id = r.assignment_id "
        "JOIN readers rd ON rd.reader_id = r.reader_id "
        f"JOIN {_t('case')} c ON c.id = r.case_id JOIN {_t('subject')} s ON s.id = c.subject_id "
        f"LEFT JOIN {_t('calibration')} cc ON cc.case_id = c.id "
        "CROSS JOIN LATERAL jsonb_each_text(r.answers) q "
        "WHERE s.trial_id = %(trial)s AND r.status = 'signed' "
        'ORDER BY rd.label, r.phase DESC, s.pseudonym, c.visit_day, c.laterality, q.key COLLATE "C"'
    )


def _predictions_sql() -> str:
    return (
        f'SELECT {CASE_LABEL} AS "case", s.pseudonym AS subject, m.name AS model, m.version AS model_version, '  # noqa: S608
        "m.task, LEFT(f.sha256, 12) AS file, p.kind, p.grade, p.referable_probability, p.glaucoma_probability, "
        f"{_days('p.created_at')} AS predicted_day "
        f"FROM {_t('prediction')} p JOIN {_t('model')} m ON m.id = p.model_version_id "
        f"LEFT JOIN {_t('file')} f ON f.id = p.case_file_id "
        f"JOIN {_t('case')} c ON c.id = p.case_id JOIN {_t('subject')} s ON s.id = c.subject_id "
        "WHERE s.trial_id = %(trial)s ORDER BY s.pseudonym, c.visit_day, c.laterality, m.name, m.version, p.created_at"
    )


def _reference_sql() -> str:
    return (
        f'SELECT {CASE_LABEL} AS "case", s.pseudonym AS subject, ref.icdr_grade, '  # noqa: S608
        "CASE WHEN ref.icdr_grade IS NULL THEN NULL WHEN ref.icdr_grade >= 2 THEN 1 ELSE 0 END AS referable, "
        "NULLIF(ref.glaucoma, '') AS glaucoma, ref.source "
        f"FROM {_t('reference')} ref JOIN {_t('case')} c ON c.id = ref.case_id "
        f"JOIN {_t('subject')} s ON s.id = c.subject_id "
        "WHERE s.trial_id = %(trial)s ORDER BY s.pseudonym, c.visit_day, c.laterality"
    )


# The analysis CSVs: the reader's yes/no answer and its 0-100 confidence become one rating on a 0-100 scale of
# "diseased" (yes: 50 + confidence/2, no: 50 - confidence/2, a missing confidence counts as 100), the ordinal
# rating an ROC analysis needs. Glaucoma "suspect" is the middle of the scale (50).
ANALYSES = {
    "referable_dr": (
        "ref.icdr_grade IS NOT NULL",
        "CASE WHEN ref.icdr_grade >= 2 THEN 1 ELSE 0 END",
    ),
    "glaucoma": (
        "ref.glaucoma IN ('yes', 'no')",
        "CASE WHEN ref.glaucoma = 'yes' THEN 1 ELSE 0 END",
    ),
}


def _analysis_sql(question: str) -> str:
    has_truth, truth = ANALYSES[question]
    # double precision, not numeric: 95 and 97.5, not 95.0000000000000000 (numeric division's scale).
    confidence = f"coalesce((r.confidences ->> '{question}')::float8, 100)"
    return (
        f"WITH {_readers_cte()} "  # noqa: S608
        f'SELECT rd.label AS reader, r.phase AS modality, {CASE_LABEL} AS "case", {truth} AS truth, '
        f"CASE r.answers ->> '{question}' WHEN 'yes' THEN 50 + {confidence} / 2 WHEN 'no' THEN 50 - {confidence} / 2 "
        "ELSE 50 END AS rating "
        f"FROM {_t('read')} r JOIN readers rd ON rd.reader_id = r.reader_id "
        f"JOIN {_t('case')} c ON c.id = r.case_id JOIN {_t('subject')} s ON s.id = c.subject_id "
        f"JOIN {_t('reference')} ref ON ref.case_id = c.id "
        f"LEFT JOIN {_t('calibration')} cc ON cc.case_id = c.id "
        f"WHERE s.trial_id = %(trial)s AND r.status = 'signed' AND cc.id IS NULL AND {has_truth} "
        f"AND r.answers ? '{question}' "
        "ORDER BY rd.label, r.phase DESC, s.pseudonym, c.visit_day, c.laterality"
    )


# name -> SQL builder; the order is the order of the download page.
TABLES = {
    "subjects": _subjects_sql,
    "cases": _cases_sql,
    "reads": _reads_sql,
    "predictions": _predictions_sql,
    "reference": _reference_sql,
    "analysis_referable_dr": lambda: _analysis_sql("referable_dr"),
    "analysis_glaucoma": lambda: _analysis_sql("glaucoma"),
}

EXPORT_DESCRIPTIONS = {
    "subjects": "one row per subject: site, sex, age, diabetes, status",
    "cases": "one row per case (an eye at a visit)",
    "reads": "signed reads, long: one row per reader, case, phase and question",
    "predictions": "AI predictions with model name and version",
    "reference": "the reference standard of each case",
    "analysis_referable_dr": "reader,modality,case,truth,rating for analyze_reads: referable DR",
    "analysis_glaucoma": "reader,modality,case,truth,rating for analyze_reads: glaucoma",
    "dictionary": "the data dictionary of every export (variable, type, allowed values, description)",
}

CASE_DOC = "case label: subject pseudonym, eye and visit day since enrolment (e.g. DR01-H01-0001-OD-D0)"


def _analysis_variables(export: str, question: str) -> list[Variable]:
    return [
        Variable(export, "reader", "text", "", "stable reader label (R01, R02...), never a name or e-mail"),
        Variable(export, "modality", "categorical", PHASES, "reading phase, the modality of the MRMC analysis"),
        Variable(export, "case", "text", "", CASE_DOC),
        Variable(export, "truth", "integer", YES_NO, f"{question} in the case's reference standard"),
        Variable(
            export,
            "rating",
            "number",
            "0-100",
            f"{question} rating: yes 50 + confidence/2, no 50 - confidence/2 (suspect 50)",
        ),
    ]


DICTIONARY: list[Variable] = [
    Variable("subjects", "subject", "text", "", "subject pseudonym issued by Visus"),
    Variable("subjects", "site", "text", "", "hospital code of the enrolling site (e.g. H01)"),
    Variable("subjects", "sex", "categorical", choices(Sex), "sex"),
    Variable("subjects", "age", "text", "0-89 | 90+", "age in whole years at enrolment; 90 and over is 90+"),
    Variable("subjects", "diabetes_type", "categorical", choices(DiabetesType), "type of diabetes"),
    Variable("subjects", "diabetes_duration_years", "integer", ">= 0", "years since diabetes diagnosis"),
    Variable("subjects", "status", "categorical", choices(SubjectStatus), "subject status"),
    Variable("subjects", "withdrawn_day", "integer", ">= 0", "days from enrolment to withdrawal (empty if none)"),
    Variable("cases", "case", "text", "", CASE_DOC),
    Variable("cases", "subject", "text", "", "subject pseudonym"),
    Variable("cases", "laterality", "categorical", choices(Laterality), "eye"),
    Variable("cases", "visit_day", "integer", "0-36500", "visit, in days since enrolment"),
    Variable("cases", "status", "categorical", choices(CaseStatus), "case status"),
    Variable("cases", "oct_rnfl_thickness_um", "number", "um", "average peripapillary RNFL thickness from OCT"),
    Variable("cases", "calibration", "integer", YES_NO, "a hidden calibration case (left out of the analyses)"),
    Variable("reads", "reader", "text", "", "stable reader label (R01, R02...), never a name or e-mail"),
    Variable("reads", "reader_group", "text", "", "the reader's experience group in this phase"),
    Variable("reads", "phase", "categorical", PHASES, "reading phase"),
    Variable("reads", "case", "text", "", CASE_DOC),
    Variable("reads", "subject", "text", "", "subject pseudonym"),
    Variable("reads", "question", "text", "", "question of the reading form (icdr_grade, referable_dr, ...)"),
    Variable("reads", "answer", "text", "", "the reader's signed answer to the question"),
    Variable("reads", "confidence", "integer", "0-100", "the reader's confidence in this answer (empty if none)"),
    Variable("reads", "signed_day", "integer", ">= 0", "days from the subject's enrolment to the signature"),
    Variable("reads", "seconds_on_case", "integer", ">= 0", "seconds the reader spent on the case"),
    Variable("reads", "read_version", "integer", ">= 1", "version of the read (above 1 after amendments)"),
    Variable("reads", "calibration", "integer", YES_NO, "read of a hidden calibration case"),
    Variable("predictions", "case", "text", "", CASE_DOC),
    Variable("predictions", "subject", "text", "", "subject pseudonym"),
    Variable("predictions", "model", "text", "", "model name"),
    Variable("predictions", "model_version", "text", "", "model version"),
    Variable("predictions", "task", "text", "", "the model's diagnostic task"),
    Variable(
        "predictions",
        "file",
        "text",
        "12 hex digits",
        "the file it read (one prediction per photograph): the start of its SHA-256, as the case page shows it; "
        "empty if not recorded",
    ),
    Variable("predictions", "kind", "categorical", choices(ResultKind), "kind of result"),
    Variable("predictions", "grade", "integer", "0-4", "predicted ICDR grade (empty if not graded)"),
    Variable("predictions", "referable_probability", "number", "0-1", "predicted probability of referable DR"),
    Variable("predictions", "glaucoma_probability", "number", "0-1", "predicted probability of glaucoma"),
    Variable("predictions", "predicted_day", "integer", ">= 0", "days from enrolment to the prediction"),
    Variable("reference", "case", "text", "", CASE_DOC),
    Variable("reference", "subject", "text", "", "subject pseudonym"),
    Variable("reference", "icdr_grade", "integer", "0-4", "reference ICDR grade (empty if none)"),
    Variable("reference", "referable", "integer", YES_NO, "referable DR: reference ICDR grade 2 or above"),
    Variable("reference", "glaucoma", "categorical", "yes, yes | no, no | suspect, suspect", "reference glaucoma"),
    Variable("reference", "source", "categorical", choices(ReferenceSource), "how the reference standard was set"),
    *_analysis_variables("analysis_referable_dr", "referable_dr"),
    *_analysis_variables("analysis_glaucoma", "glaucoma"),
]

DICTIONARY_COLUMNS = ("export", "variable", "type", "allowed_values", "description")


def dictionary_csv() -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DICTIONARY_COLUMNS)
    for v in DICTIONARY:
        writer.writerow((v.export, v.name, v.type, v.allowed, v.description))
    return out.getvalue()


def sql_of(name: str) -> str:
    """The SELECT of an export, with the ``%(trial)s`` parameter."""
    if name not in TABLES:
        raise KeyError(f"no export named {name!r}; exports: {', '.join(TABLES)}")
    return TABLES[name]()


PANDAS_TYPES = {"text": "string", "integer": "Int64", "number": "float64", "categorical": "category"}
R_TYPES = {"text": "character", "integer": "integer", "number": "numeric", "categorical": "factor"}


def _prefix_note(prefix: str) -> str:
    where = "downloaded from the exports page" if prefix else "written by export_trial"
    return f"files {where}"


def pandas_snippet(prefix: str = "") -> str:
    """A short pandas loader: every export read with the dictionary's types. ``prefix``: what the file names start
    with (the exports page serves ``SLUG-NAME.csv``; ``export_trial`` writes ``NAME.csv``)."""
    lines = [
        "# Load the Visus exports with the data dictionary's types: python load_visus.py (in the export folder).",
        "import pandas as pd",
        "",
        f'PREFIX = "{prefix}"  # {_prefix_note(prefix)}',
        'TYPES = {"text": "string", "integer": "Int64", "number": "float64", "categorical": "category"}',
        'dictionary = pd.read_csv(f"{PREFIX}dictionary.csv", dtype=str, keep_default_na=False)',
        "tables = {",
        "    name: pd.read_csv(",
        '        f"{PREFIX}{name}.csv",',
        "        dtype={row.variable: TYPES[row.type] for row in rows.itertuples()},",
        "        keep_default_na=False,",
        '        na_values=[""],',
        "    )",
        '    for name, rows in dictionary.groupby("export")',
        "}",
        "print({name: table.shape for name, table in tables.items()})",
        "",
    ]
    return "\n".join(lines)


def r_snippet(prefix: str = "") -> str:
    """A short R loader: every export read with the dictionary's types (base R only); ``prefix`` as for pandas."""
    return "\n".join(
        [
            "# Load the Visus exports with the data dictionary's types: Rscript load_visus.R (in the export folder).",
            f'prefix <- "{prefix}"  # {_prefix_note(prefix)}',
            'types <- c(text = "character", integer = "integer", number = "numeric", categorical = "factor")',
            'dictionary <- read.csv(paste0(prefix, "dictionary.csv"), colClasses = "character")',
            "tables <- lapply(split(dictionary, dictionary$export), function(rows) {",
            '  read.csv(paste0(prefix, rows$export[1], ".csv"),',
            '           colClasses = setNames(types[rows$type], rows$variable), na.strings = "")',
            "})",
            "str(tables)",
            "",
        ]
    )
