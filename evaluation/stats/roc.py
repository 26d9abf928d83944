"""ROC curve, empirical AUC with DeLong variance, and the paired DeLong test.

The empirical AUC is the Mann-Whitney statistic: the probability that a diseased case scores higher than a
non-diseased one, ties counting 1/2 (it equals the trapezoidal area under the empirical ROC curve). DeLong,
DeLong & Clarke-Pearson (1988) write it as the mean of *placement values*: for a diseased case, the share of
non-diseased cases it outscores (V10); for a non-diseased case, the share of diseased cases that outscore it
(V01). Var(AUC) = s²(V10)/m + s²(V01)/n with m diseased and n non-diseased cases.

Speed (Sun & Xu 2014 reach the same with midranks): one sort of all scores gives every placement value. The
sorted scores fall into groups of tied values; counting diseased and non-diseased cases per group and taking
cumulative sums gives, for each group, how many of the other class lie below it and within it. No second
sort per class is needed. ``python -m tests.benchmarks bench_stats`` times it next to scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from evaluation.stats.proportions import binary_truth, normal_quantile


def _checked(truth: np.ndarray | list, scores: np.ndarray | list) -> tuple[np.ndarray, np.ndarray]:
    diseased = binary_truth(truth)
    values = np.asarray(scores, dtype=float)
    if values.shape != diseased.shape:
        raise ValueError(f"truth has {diseased.size} cases but the scores have {values.size}")
    if not np.all(np.isfinite(values)):
        raise ValueError("scores must be finite numbers")
    positives = int(np.count_nonzero(diseased))
    if positives == 0 or positives == diseased.size:
        raise ValueError("an AUC needs both diseased and non-diseased cases")
    return diseased, values


def _tie_groups(diseased: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One sort: the order, each sorted case's group of tied scores, and per group the numbers of diseased and
    non-diseased cases."""
    order = np.argsort(values)
    ordered = values[order]
    new = np.empty(ordered.size, dtype=bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    diseased_in = np.add.reduceat(diseased[order].view(np.int8), starts, dtype=np.int64)
    healthy_in = np.diff(np.append(starts, ordered.size)) - diseased_in
    return order, new, diseased_in, healthy_in


def _group_placements(diseased_in: np.ndarray, healthy_in: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Placement values per group of tied scores (V10 for its diseased cases, V01 for its non-diseased ones)."""
    m = int(diseased_in.sum())
    n = int(healthy_in.sum())
    healthy_below = np.cumsum(healthy_in) - healthy_in
    diseased_above = m - np.cumsum(diseased_in)
    return (healthy_below + 0.5 * healthy_in) / n, (diseased_above + 0.5 * diseased_in) / m, m, n


@dataclass(frozen=True)
class Placements:
    """Placement values of one score vector: ``v10`` per diseased case, ``v01`` per non-diseased case, in case
    order (the order of the diseased, resp. non-diseased, cases in the input)."""

    v10: np.ndarray
    v01: np.ndarray

    @property
    def auc(self) -> float:
        return float(self.v10.mean())


def placements(truth: np.ndarray | list, scores: np.ndarray | list) -> Placements:
    """DeLong's placement values from one sort of the scores (see the module docstring)."""
    diseased, values = _checked(truth, scores)
    order, new, diseased_in, healthy_in = _tie_groups(diseased, values)
    v10_group, v01_group, _, _ = _group_placements(diseased_in, healthy_in)
    case_group = np.empty(order.size, dtype=np.int64)
    case_group[order] = np.cumsum(new) - 1
    return Placements(v10=v10_group[case_group[diseased]], v01=v01_group[case_group[~diseased]])


@dataclass(frozen=True)
class AucResult:
    auc: float
    variance: float
    se: float
    ci: tuple[float, float]
    diseased: int
    non_diseased: int

    def as_dict(self) -> dict:
        return {
            "auc": self.auc,
            "se": self.se,
            "ci95": list(self.ci),
            "diseased": self.diseased,
            "non_diseased": self.non_diseased,
        }


def auc_delong(truth: np.ndarray | list, scores: np.ndarray | list, confidence: float = 0.95) -> AucResult:
    """Empirical AUC with DeLong's variance and a Wald interval (as pROC's ``ci.auc(method="delong")``), clipped
    to [0, 1]."""
    diseased, values = _checked(truth, scores)
    _, _, diseased_in, healthy_in = _tie_groups(diseased, values)
    # Every case of a group of tied scores shares its placement value, so means and variances are weighted sums
    # over groups (the number of distinct scores), not over cases.
    v10, v01, m, n = _group_placements(diseased_in, healthy_in)
    auc = float(np.dot(diseased_in, v10) / m)
    s10 = float(np.dot(diseased_in, (v10 - auc) ** 2) / (m - 1)) if m > 1 else 0.0
    s01 = float(np.dot(healthy_in, (v01 - auc) ** 2) / (n - 1)) if n > 1 else 0.0
    variance = s10 / m + s01 / n
    se = float(np.sqrt(variance))
    z = normal_quantile(confidence)
    return AucResult(
        auc=auc,
        variance=variance,
        se=se,
        ci=(max(0.0, auc - z * se), min(1.0, auc + z * se)),
        diseased=m,
        non_diseased=n,
    )


def delong_covariance(
    truth: np.ndarray | list, score_sets: list[np.ndarray] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k) for k score vectors on the same cases."""
    found = [placements(truth, scores) for scores in score_sets]
    v10 = np.stack([p.v10 for p in found])
    v01 = np.stack([p.v01 for p in found])
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(found), len(found)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(found), len(found)))
    return v10.mean(axis=1), s10 / m + s01 / n


@dataclass(frozen=True)
class PairedDelongResult:
    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float
    ci: tuple[float, float]

    def as_dict(self) -> dict:
        return {
            "auc_a": self.auc_a,
            "auc_b": self.auc_b,
            "difference": self.difference,
            "se": self.se,
            "z": self.z,
            "p_value": self.p_value,
            "ci95": list(self.ci),
        }


def delong_paired_test(
    truth: np.ndarray | list, scores_a: np.ndarray | list, scores_b: np.ndarray | list, confidence: float = 0.95
) -> PairedDelongResult:
    """DeLong's test of AUC(a) = AUC(b) for two scores on the same cases (two models, or a model and a reader);
    two-sided, as pROC's ``roc.test(method="delong", paired=TRUE)``."""
    aucs, covariance = delong_covariance(truth, [np.asarray(scores_a, float), np.asarray(scores_b, float)])
    difference = float(aucs[0] - aucs[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    se = float(np.sqrt(max(variance, 0.0)))
    if se == 0.0:
        raise ValueError("the two scores rank the cases identically: the paired DeLong test is undefined")
    z = difference / se
    q = normal_quantile(confidence)
    return PairedDelongResult(
        auc_a=float(aucs[0]),
        auc_b=float(aucs[1]),
        difference=difference,
        se=se,
        z=z,
        p_value=float(2 * sps.norm.sf(abs(z))),
        ci=(difference - q * se, difference + q * se),
    )


@dataclass(frozen=True)
class RocCurve:
    """Empirical ROC points from (0, 0) to (1, 1); ``thresholds[i]`` calls ``score >= thresholds[i]`` positive
    (the first threshold is +inf, nothing positive)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc_curve(truth: np.ndarray | list, scores: np.ndarray | list) -> RocCurve:
    """The empirical ROC curve with one point per distinct score (as scikit-learn's with
    ``drop_intermediate=False``)."""
    diseased, values = _checked(truth, scores)
    order = np.argsort(-values, kind="stable")
    ordered = values[order]
    is_diseased = diseased[order]
    last_of_group = np.append(ordered[1:] != ordered[:-1], True)
    tp = np.cumsum(is_diseased)[last_of_group]
    fp = np.cumsum(~is_diseased)[last_of_group]
    m = int(diseased.sum())
    n = diseased.size - m
    return RocCurve(
        fpr=np.concatenate(([0.0], fp / n)),
        tpr=np.concatenate(([0.0], tp / m)),
        thresholds=np.concatenate(([np.inf], ordered[last_of_group])),
    )
