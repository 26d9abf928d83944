"""A trial's analyses from its own data (issue 12, item 3), for the dashboard.

For each diagnostic question of the trial's reading form (referable DR, ICDR grade, glaucoma), against the
reference standard (and saying whether it is locked): each model version (AUC with DeLong CI, ROC curve,
high-sensitivity and high-specificity operating points, calibration), each reader and each reader group in each
phase (AUC, sensitivity and specificity with Wilson intervals), OR-MRMC of readers unaided vs aided and of readers
vs each model, with power and the sample still missing, paired DeLong between model versions, 5x5 grade
confusion matrices, the readers' pairwise kappa, per-site and per-subgroup breakdowns, reader drift on the
hidden calibration cases, reading progress and accrual, and which figures the reading design supports.

The data come from ``evaluation.selectors_analysis.trial_data`` as numpy arrays; every figure here is numpy and
``evaluation.stats`` (loops run over readers, models and subgroups, never over reads or cases). Nothing is cached:
each call reads the signed reads as they are, so the figures move as reads are signed.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np

from evaluation.selectors_analysis import PHASES, TrialData, readable_cases, site_accrual, trial_data
from evaluation.stats.kappa import cohen_kappa_table, cohen_kappas
from evaluation.stats.mrmc import MrmcResult, or_mrmc
from evaluation.stats.power import study_plan
from evaluation.stats.proportions import wilson_interval
from evaluation.stats.roc import auc_delong, delong_paired_test, roc_curve
from trials.models import Trial

QUESTIONS = {
    "referable_dr": "Referable diabetic retinopathy (ICDR grade 2 or above)",
    "icdr_grade": "ICDR grade (referable at grade 2 or above)",
    "glaucoma": "Glaucoma (yes vs no; suspect references left out)",
}
HIGH_SENSITIVITY = 0.95  # the model's high-sensitivity operating point: the best specificity at this sensitivity
HIGH_SPECIFICITY = 0.95  # and the high-specificity one: the best sensitivity at this specificity
DEFAULT_EFFECT = 0.05  # the AUC difference powered for when the observed one is zero
RELIABILITY_BINS = 10
MAX_ROC_POINTS = 400  # a longer ROC curve is thinned for the plot (its AUC is computed on every case)
BREAKDOWNS = {"site": "Site", "age_band": "Age band", "sex": "Sex", "diabetes_type": "Diabetes type"}


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _interval(pair) -> list[float | None]:
    return [_number(pair[0]), _number(pair[1])]


def _proportion(successes: int, total: int) -> dict[str, Any]:
    """A proportion with its Wilson 95% interval."""
    if total == 0:
        return {"estimate": None, "successes": 0, "total": 0, "ci95": [None, None]}
    return {
        "estimate": successes / total,
        "successes": int(successes),
        "total": int(total),
        "ci95": _interval(wilson_interval(int(successes), int(total))),
    }


def truth_of(data: TrialData, question: str) -> np.ndarray:
    """(N,) 1 diseased, 0 not, nan without a usable reference for the question."""
    if question == "glaucoma":
        return data.ref_glaucoma
    return np.where(np.isnan(data.ref_grade), np.nan, data.ref_grade >= 2)


def _both_classes(truth: np.ndarray, minimum: int = 1) -> bool:
    return int((truth == 1).sum()) >= minimum and int((truth == 0).sum()) >= minimum


def _auc(truth: np.ndarray, scores: np.ndarray) -> dict[str, Any] | None:
    ok = ~np.isnan(truth) & ~np.isnan(scores)
    if not _both_classes(truth[ok]):
        return None
    result = auc_delong(truth[ok] == 1, scores[ok])
    return {"auc": result.auc, "se": result.se, "ci95": _interval(result.ci), "cases": int(ok.sum())}


def _accuracy(truth: np.ndarray, calls: np.ndarray) -> dict[str, Any]:
    """Sensitivity and specificity of calls (..., N) against truth (N,), summed over the leading axes."""
    ok = ~np.isnan(truth) & ~np.isnan(calls)
    diseased, healthy = ok & (truth == 1), ok & (truth == 0)
    return {
        "sensitivity": _proportion(int((diseased & (calls == 1)).sum()), int(diseased.sum())),
        "specificity": _proportion(int((healthy & (calls == 0)).sum()), int(healthy.sum())),
    }


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    if x.size > MAX_ROC_POINTS:
        keep = np.unique(np.linspace(0, x.size - 1, MAX_ROC_POINTS).astype(int))
        x, y = x[keep], y[keep]
    return x.round(5).tolist(), y.round(5).tolist()


def _operating_points(truth: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    curve = roc_curve(truth == 1, scores)
    sensitivity, specificity = curve.tpr, 1 - curve.fpr
    m, n = int((truth == 1).sum()), int((truth == 0).sum())
    points: dict[str, Any] = {}
    for name, chosen in (
        ("high_sensitivity", np.flatnonzero(sensitivity >= HIGH_SENSITIVITY)),
        ("high_specificity", np.flatnonzero(specificity >= HIGH_SPECIFICITY)),
    ):
        if chosen.size == 0:
            points[name] = None
            continue
        # The best specificity among points of high enough sensitivity, or the best sensitivity at high specificity.
        i = (
            chosen[np.argmax(specificity[chosen])]
            if name == "high_sensitivity"
            else chosen[np.argmax(sensitivity[chosen])]
        )
        points[name] = {
            "threshold": _number(curve.thresholds[i]),
            "sensitivity": _proportion(round(sensitivity[i] * m), m),
            "specificity": _proportion(round(specificity[i] * n), n),
        }
    x, y = _thin(curve.fpr, curve.tpr)
    return {"roc": {"fpr": x, "tpr": y}, **points}


def _calibration(truth: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    """Reliability curve (equal-width bins) and Brier score of predicted probabilities."""
    bins = np.clip((probability * RELIABILITY_BINS).astype(int), 0, RELIABILITY_BINS - 1)
    counts = np.bincount(bins, minlength=RELIABILITY_BINS)
    predicted = np.bincount(bins, weights=probability, minlength=RELIABILITY_BINS)
    observed = np.bincount(bins, weights=truth, minlength=RELIABILITY_BINS)
    used = counts > 0
    return {
        "brier": float(np.mean((probability - truth) ** 2)),
        "mean_predicted": (predicted[used] / counts[used]).round(5).tolist(),
        "observed": (observed[used] / counts[used]).round(5).tolist(),
        "cases": counts[used].tolist(),
    }


def _models(data: TrialData, question: str, truth: np.ndarray) -> list[dict[str, Any]]:
    out = []
    scores = data.model_scores[question]
    for m, label in enumerate(data.models):
        s = scores[m]
        ok = ~np.isnan(truth) & ~np.isnan(s)
        if not ok.any():
            continue
        row: dict[str, Any] = {"model": label, "cases": int(ok.sum()), "auc": _auc(truth, s)}
        if row["auc"] is not None:
            row.update(_operating_points(truth[ok], s[ok]))
        threshold = 0.5 if data.model_probability[question] else 2
        row["at_threshold"] = {
            "threshold": threshold,
            **_accuracy(truth, np.where(np.isnan(s), np.nan, s >= threshold)),
        }
        if data.model_probability[question] and ok.any():
            row["calibration"] = _calibration(truth[ok], s[ok])
        out.append(row)
    return out


def _readers(data: TrialData, question: str, truth: np.ndarray) -> list[dict[str, Any]]:
    calls, ratings = data.calls[question], data.ratings[question]
    out = []
    for p, phase in enumerate(PHASES):
        for r, reader in enumerate(data.readers):
            read = ~np.isnan(ratings[p, r])
            if not read.any():
                continue
            out.append(
                {
                    "reader": reader["label"],
                    "group": reader["group"],
                    "phase": phase,
                    "reads": int(read.sum()),
                    "auc": _auc(truth, ratings[p, r]),
                    **_accuracy(truth, calls[p, r]),
                }
            )
    return out


def _groups(data: TrialData, question: str, truth: np.ndarray, readers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase: every reader pooled, then each experience group (reads pooled over its readers)."""
    calls = data.calls[question]
    groups = np.array([r["group"] for r in data.readers], dtype=object)
    out = []
    for p, phase in enumerate(PHASES):
        for name in ["all readers", *sorted(set(groups.tolist()))]:
            members = np.ones(len(groups), bool) if name == "all readers" else groups == name
            pooled = calls[p][members]
            if np.isnan(pooled).all():
                continue
            aucs = [
                r["auc"]["auc"]
                for r in readers
                if r["phase"] == phase and r["auc"] and (name == "all readers" or r["group"] == name)
            ]
            out.append(
                {
                    "group": name,
                    "phase": phase,
                    "readers": int((~np.isnan(pooled).all(axis=1)).sum()),
                    "mean_auc": float(np.mean(aucs)) if aucs else None,
                    **_accuracy(truth, pooled),
                }
            )
    return out


def _mrmc_summary(result: MrmcResult, names: list[str], readers: int, cases: int, left_out: int) -> dict[str, Any]:
    test = result.rrrc
    difference = test.differences[0]
    effect = difference.estimate if abs(difference.estimate) > 1e-9 else DEFAULT_EFFECT
    try:
        plan = study_plan(result.components, effect)
        power: dict[str, Any] | None = {
            "effect": plan.effect,
            "power": plan.current.power,
            "more_cases": plan.more_cases,
            "more_readers": plan.more_readers,
            "sentence": plan.sentence(),
        }
    except ValueError as error:
        power = {"sentence": f"Power cannot be computed: {error}."}
    return {
        "supported": True,
        "modalities": names,
        "readers": readers,
        "cases": cases,
        "cases_left_out": left_out,
        "foms": [_number(v) for v in result.foms.mean(axis=1)],
        "difference": difference.estimate,
        "ci95": _interval(difference.ci),
        "f": _number(test.statistic),
        "ndf": test.ndf,
        "ddf": _number(test.ddf),
        "p_value": _number(test.p_value),
        "power": power,
        "notes": list(result.notes),
    }


def _crossed(stack: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, Any]:
    """OR-MRMC (AUC, jackknife) of a (T, R, N) stack on the cases every reader read in every modality."""
    readers_in = (~np.isnan(stack).all(axis=2)).all(axis=0)  # readers who read in every modality
    stack = stack[:, readers_in]
    if stack.shape[1] < 2:
        return {"supported": False, "reason": "fewer than two readers have read in every modality compared"}
    with_truth = ~np.isnan(truth)
    complete = with_truth & ~np.isnan(stack).any(axis=(0, 1))
    if not _both_classes(truth[complete], 2):
        return {
            "supported": False,
            "reason": (
                f"{int(complete.sum())} cases were read by all {stack.shape[1]} readers in every modality; OR-MRMC "
                "needs a fully crossed set with at least two diseased and two non-diseased cases"
            ),
        }
    result = or_mrmc(stack[:, :, complete], truth[complete] == 1)
    left_out = int((with_truth & ~np.isnan(stack).all(axis=(0, 1)) & ~complete).sum())
    return _mrmc_summary(result, names, stack.shape[1], int(complete.sum()), left_out)


def _mrmc(data: TrialData, question: str, truth: np.ndarray) -> dict[str, Any]:
    ratings = data.ratings[question]
    out: dict[str, Any] = {}
    if data.aided_phase:
        out["unaided_vs_aided"] = _crossed(ratings[::-1], truth, ["aided", "unaided"])
    else:
        out["unaided_vs_aided"] = {"supported": False, "reason": "the reading set-up has no AI-aided phase"}
    out["readers_vs_models"] = []
    scores = data.model_scores[question]
    for m, label in enumerate(data.models):
        unaided = ratings[0]
        standalone = np.broadcast_to(scores[m], unaided.shape).copy()
        standalone[np.isnan(unaided)] = np.nan  # the model counts on the cases each reader read
        found = _crossed(np.stack([unaided, standalone]), truth, ["readers unaided", label])
        out["readers_vs_models"].append({"model": label, **found})
    return out


def _paired_models(data: TrialData, question: str, truth: np.ndarray) -> list[dict[str, Any]]:
    scores = data.model_scores[question]
    out = []
    for a, b in combinations(range(len(data.models)), 2):
        ok = ~np.isnan(truth) & ~np.isnan(scores[a]) & ~np.isnan(scores[b])
        row: dict[str, Any] = {"first": data.models[a], "second": data.models[b], "cases": int(ok.sum())}
        if not _both_classes(truth[ok], 2):
            row["reason"] = "not enough shared cases of both classes"
        else:
            try:
                test = delong_paired_test(truth[ok] == 1, scores[a][ok], scores[b][ok])
                row.update(difference=test.difference, ci95=_interval(test.ci), z=_number(test.z), p_value=test.p_value)
            except ValueError as error:
                row["reason"] = str(error)
        out.append(row)
    return out


def _confusion(data: TrialData) -> list[dict[str, Any]]:
    """5x5 tables of reference ICDR grade (rows) vs the graded answer (columns): readers pooled per phase, and
    each model; with the quadratic-weighted kappa against the reference."""
    reference = data.ref_grade
    out = []
    sources = [(f"readers {phase}", data.ratings["icdr_grade"][p]) for p, phase in enumerate(PHASES)]
    sources += [(label, data.model_scores["icdr_grade"][m]) for m, label in enumerate(data.models)]
    for name, graded in sources:
        graded = np.atleast_2d(graded)
        ok = ~np.isnan(graded) & ~np.isnan(reference)[None, :]
        if not ok.any():
            continue
        rows = np.broadcast_to(reference, graded.shape)[ok].astype(int)
        cols = np.clip(graded[ok], 0, 4).astype(int)
        table = np.bincount(rows * 5 + cols, minlength=25).reshape(5, 5)
        try:
            kappa = _number(cohen_kappa_table(table, "quadratic").kappa)
        except ValueError:
            kappa = None
        out.append({"source": name, "table": table.tolist(), "quadratic_kappa": kappa, "reads": int(ok.sum())})
    return out


def _agreement(data: TrialData, question: str) -> dict[str, Any]:
    """Pairwise Cohen's kappa of the readers' unaided calls on the cases both read (quadratic-weighted grades for
    the ICDR grade)."""
    if question == "icdr_grade":
        values, k, weights = data.ratings[question][0], 5, "quadratic"
    else:
        values, k, weights = data.calls[question][0], 2, "unweighted"
    labels = [r["label"] for r in data.readers]
    if len(labels) < 2:
        return {"readers": labels, "kappa": [[1.0]] * len(labels), "weights": weights}
    # One k x k table per pair of readers, all at once: table[a, b, i, j] counts the cases reader a put in
    # category i and reader b in category j (cases either did not read count nowhere).
    read = ~np.isnan(values)
    category = np.clip(np.nan_to_num(values), 0, k - 1).astype(int)
    onehot = (category[:, :, None] == np.arange(k)) & read[:, :, None]  # (R, N, k)
    flat = onehot.transpose(0, 2, 1).reshape(len(labels) * k, -1).astype(float)  # (R*k, N)
    tables = (flat @ flat.T).reshape(len(labels), k, len(labels), k).transpose(0, 2, 1, 3)
    kappas = cohen_kappas(tables, weights)  # type: ignore[arg-type]
    np.fill_diagonal(kappas, 1.0)
    matrix = [[_number(value) for value in row] for row in kappas.tolist()]
    return {"readers": labels, "kappa": matrix, "weights": weights}


def _breakdowns(data: TrialData, question: str, truth: np.ndarray) -> list[dict[str, Any]]:
    attributes = {
        "site": data.case_site,
        "age_band": data.case_age_band,
        "sex": data.case_sex,
        "diabetes_type": data.case_diabetes,
    }
    calls = data.calls[question][0]
    # The unaided readers' positive and all calls per case, once (R x N): a subgroup's sensitivity and specificity
    # are sums of these over its cases, the same counts as _accuracy over the subgroup's cases.
    positive, called = (calls == 1).sum(axis=0), (~np.isnan(calls)).sum(axis=0)
    scores = data.model_scores[question]
    out = []
    for key, values in attributes.items():
        text = values.astype(str)
        for value in np.unique(text).tolist():
            here = text == value
            t = np.where(here, truth, np.nan)
            with_truth = ~np.isnan(t)
            if not with_truth.any():
                continue
            out.append(
                {
                    "by": BREAKDOWNS[key],
                    "value": value,
                    "cases": int(with_truth.sum()),
                    "diseased": int((t == 1).sum()),
                    "models": [{"model": label, "auc": _auc(t, scores[m])} for m, label in enumerate(data.models)],
                    "readers_unaided": {
                        "sensitivity": _proportion(int(positive[t == 1].sum()), int(called[t == 1].sum())),
                        "specificity": _proportion(int((called - positive)[t == 0].sum()), int(called[t == 0].sum())),
                    },
                }
            )
    return out


def _question(data: TrialData, question: str) -> dict[str, Any]:
    truth = truth_of(data, question)
    with_truth = ~np.isnan(truth)
    out: dict[str, Any] = {
        "key": question,
        "label": QUESTIONS[question],
        "cases_with_reference": int(with_truth.sum()),
        "diseased": int((truth == 1).sum()),
        "non_diseased": int((truth == 0).sum()),
    }
    if not _both_classes(truth):
        out["reason"] = (
            "no reference standard for this question yet"
            if not with_truth.any()
            else "the reference standard has only one class so far: no sensitivity, specificity or AUC"
        )
        return out
    readers = _readers(data, question, truth)
    out.update(
        models=_models(data, question, truth),
        readers=readers,
        groups=_groups(data, question, truth, readers),
        mrmc=_mrmc(data, question, truth),
        paired_models=_paired_models(data, question, truth),
        agreement=_agreement(data, question),
        breakdowns=_breakdowns(data, question, truth),
    )
    return out


def _drift(data: TrialData) -> list[dict[str, Any]]:
    """Per reader: cumulative agreement with the known answers over their signed calibration reads, in order."""
    rows = data.calibration[data.calibration[:, 3] == 1]
    if not len(rows):
        return []
    reader, agree = rows[:, 1].astype(int), rows[:, 2]
    out = []
    for r in np.unique(reader):
        mine = agree[reader == r]
        out.append(
            {
                "reader": data.readers[r]["label"],
                "group": data.readers[r]["group"],
                "reads": int(mine.size),
                "agree": int(mine.sum()),
                "cumulative": (np.cumsum(mine) / np.arange(1, mine.size + 1)).round(4).tolist(),
            }
        )
    return out


def _progress(data: TrialData, trial: Trial) -> dict[str, Any]:
    """Signed reads per reader and phase out of the cases there are to read, and accrual per site."""
    counts = data.read_counts
    readers = []
    for r, reader in enumerate(data.readers):
        for p, phase in enumerate(PHASES):
            if phase in reader["phases"]:
                readers.append(
                    {
                        "reader": reader["label"],
                        "group": reader["group"],
                        "phase": phase,
                        "signed": int(counts[p, r, 0]),
                        "drafts": int(counts[p, r, 1]),
                    }
                )
    sites = site_accrual(trial)
    return {
        "readable_cases": readable_cases(trial),
        "readers": readers,
        "sites": sites,
        "subjects": sum(site["enrolled"] for site in sites),
    }


def _design(data: TrialData) -> list[dict[str, Any]]:
    """Which figures the reading design supports, and why not when it does not."""
    crossed = data.crossing == "fully_crossed"
    rows = [
        {
            "figure": "Reference standard",
            "supported": data.reference_locked,
            "note": "locked: the figures are final for the reads signed so far"
            if data.reference_locked
            else "NOT locked: every figure is provisional and may change when the reference standard does",
        },
        {
            "figure": "OR-MRMC (random readers and cases)",
            "supported": crossed,
            "note": "fully crossed design: computed on the cases every reader has read"
            if crossed
            else "needs a fully crossed design; k readers per case supports per-reader and pooled figures only",
        },
        {
            "figure": "Readers unaided vs AI-aided",
            "supported": data.aided_phase,
            "note": "AI-aided phase after the washout" if data.aided_phase else "no AI-aided phase in this trial",
        },
        {
            "figure": "Models vs readers and paired DeLong between models",
            "supported": bool(data.models),
            "note": f"{len(data.models)} model version(s) with predictions"
            if data.models
            else "no predictions on the trial's cases yet",
        },
        {
            "figure": "Breakdown by camera",
            "supported": False,
            "note": "the camera is not recorded in Visus (uploads are de-identified and keep no device tags)",
        },
        {
            "figure": "Pooled sensitivity and specificity of reader groups",
            "supported": True,
            "note": "reads pooled over readers: the Wilson intervals ignore the correlation between a reader's reads",
        },
        {
            "figure": "Model operating points",
            "supported": True,
            "note": "chosen on these same cases, so optimistic: pre-specify thresholds for a confirmatory claim",
        },
    ]
    return rows


def trial_analysis(trial: Trial) -> dict[str, Any]:
    """Every figure of the trial's dashboard, as JSON-ready data."""
    data = trial_data(trial)
    asked = [q for q in QUESTIONS if q in trial.reading_form]
    questions = [_question(data, q) for q in asked]
    return {
        "trial": trial.slug,
        "reference_locked": data.reference_locked,
        "cases": data.cases,
        "cases_with_reference": int(data.has_reference.sum()),
        "signed_reads": data.reads,
        "readers": data.readers,
        "models": data.models,
        "questions": questions,
        "confusion": _confusion(data) if "icdr_grade" in trial.reading_form else [],
        "drift": _drift(data),
        "progress": _progress(data, trial),
        "design": _design(data),
    }
