"""Validation metrics (pure numpy/scipy).

Quadratic-weighted Cohen's kappa over the full ICDR category list (so an unused grade does not change the
weights) and ROC AUC by the Mann-Whitney statistic with midranks for ties (equal to the trapezoidal area
under the empirical ROC curve); accuracy, sensitivity and specificity of binary scores at a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from diagnosis.networks.synthetic import ICDR_GRADES


def quadratic_weighted_kappa(
    rater_a: Sequence[int], rater_b: Sequence[int], categories: Sequence[int] = ICDR_GRADES
) -> float:
    """Cohen's kappa with weights (i - j)^2 / (K - 1)^2 over the given category list.

    Pass every category of the scale (ICDR: 0-4): the weights depend on K, so building the list from
    the grades that happen to occur changes the result. NaN when chance disagreement is zero (both
    raters used one and the same category throughout).
    """
    a, b = np.asarray(rater_a), np.asarray(rater_b)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("expected two non-empty rating sequences of equal length")
    position = {category: i for i, category in enumerate(categories)}
    if len(position) < 2:
        raise ValueError("kappa needs at least two categories")
    unknown = (set(a.tolist()) | set(b.tolist())) - set(position)
    if unknown:
        raise ValueError(f"ratings outside the category list: {sorted(unknown)}")
    k = len(position)
    observed = np.zeros((k, k))
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        observed[position[x], position[y]] += 1
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / a.size
    i, j = np.indices((k, k))
    weights = (i - j) ** 2 / (k - 1) ** 2
    chance = float((weights * expected).sum())
    if chance == 0.0:
        return float("nan")
    return 1.0 - float((weights * observed).sum()) / chance


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting one half."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("labels and scores must be 1-D and of equal length")
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative case")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    ranks = rankdata(s, method="average")  # midranks for ties
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def binary_metrics(truth: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, sensitivity and specificity at `threshold`, and ROC AUC, of 0/1 truth and scores."""
    predicted = scores >= threshold
    metrics = {"accuracy": float((predicted == truth).mean()), "n": float(len(truth))}
    if truth.any():
        metrics["sensitivity"] = float(predicted[truth].mean())
    if (~truth).any():
        metrics["specificity"] = float((~predicted[~truth]).mean())
    if truth.any() and (~truth).any():
        metrics["auc"] = roc_auc(truth, scores)
    return metrics
