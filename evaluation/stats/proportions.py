"""Binomial proportions and the diagnostic metrics built on them, with Wilson and Clopper-Pearson intervals.

Pure numpy/scipy. Intervals are two-sided at ``confidence`` (0.95 by default). Wilson is the score interval
(Wilson 1927), Clopper-Pearson the exact interval from the beta quantiles (Clopper & Pearson 1934), which is 0
(or 1) at its open end when every trial failed (or succeeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as sps


def _check_counts(successes: int, total: int) -> None:
    if total < 0 or successes < 0 or successes > total:
        raise ValueError(f"need 0 <= successes <= total, got {successes} of {total}")


@lru_cache(maxsize=8)
def normal_quantile(confidence: float) -> float:
    """The two-sided normal quantile of a confidence level (1.959963984540054 for 0.95), computed once per level:
    scipy's ppf costs more than the rest of an interval."""
    return float(sps.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval; (nan, nan) when ``total`` is 0."""
    _check_counts(successes, total)
    if total == 0:
        return (float("nan"), float("nan"))
    z = normal_quantile(confidence)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, float(centre - half)), min(1.0, float(centre + half)))


def clopper_pearson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval; (nan, nan) when ``total`` is 0."""
    _check_counts(successes, total)
    if total == 0:
        return (float("nan"), float("nan"))
    alpha = 1 - confidence
    lower = 0.0 if successes == 0 else float(sps.beta.ppf(alpha / 2, successes, total - successes + 1))
    upper = 1.0 if successes == total else float(sps.beta.ppf(1 - alpha / 2, successes + 1, total - successes))
    return (lower, upper)


@dataclass(frozen=True)
class Proportion:
    successes: int
    total: int
    estimate: float
    wilson: tuple[float, float]
    clopper_pearson: tuple[float, float]

    def as_dict(self) -> dict:
        return {
            "successes": self.successes,
            "total": self.total,
            "estimate": self.estimate,
            "wilson_95ci": list(self.wilson),
            "clopper_pearson_95ci": list(self.clopper_pearson),
        }


def proportion(successes: int, total: int, confidence: float = 0.95) -> Proportion:
    """A proportion with both intervals; the estimate is nan when ``total`` is 0."""
    _check_counts(successes, total)
    return Proportion(
        successes=int(successes),
        total=int(total),
        estimate=successes / total if total else float("nan"),
        wilson=wilson_interval(successes, total, confidence),
        clopper_pearson=clopper_pearson_interval(successes, total, confidence),
    )


@dataclass(frozen=True)
class DiagnosticMetrics:
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    accuracy: Proportion

    def as_dict(self) -> dict:
        return {
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "true_negatives": self.true_negatives,
            "false_negatives": self.false_negatives,
            **{
                name: getattr(self, name).as_dict() for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy")
            },
        }


def binary_truth(truth: np.ndarray | list) -> np.ndarray:
    """``truth`` as a boolean array; anything but 0/1 (or booleans) is refused."""
    values = np.asarray(truth)
    if values.ndim != 1:
        raise ValueError("truth must be one-dimensional")
    if values.dtype != bool:
        if not np.all((values == 0) | (values == 1)):
            raise ValueError("truth must be 0 (non-diseased) or 1 (diseased)")
        values = values == 1
    return values


def diagnostic_metrics(
    truth: np.ndarray | list, positive: np.ndarray | list, confidence: float = 0.95
) -> DiagnosticMetrics:
    """Sensitivity, specificity, PPV, NPV and accuracy of binary calls ``positive`` against ``truth``."""
    diseased = binary_truth(truth)
    called = binary_truth(positive)
    if called.shape != diseased.shape:
        raise ValueError(f"truth has {diseased.size} cases but the calls have {called.size}")
    tp = int(np.count_nonzero(diseased & called))
    fp = int(np.count_nonzero(~diseased & called))
    tn = int(np.count_nonzero(~diseased & ~called))
    fn = int(np.count_nonzero(diseased & ~called))
    return DiagnosticMetrics(
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
        sensitivity=proportion(tp, tp + fn, confidence),
        specificity=proportion(tn, tn + fp, confidence),
        ppv=proportion(tp, tp + fp, confidence),
        npv=proportion(tn, tn + fn, confidence),
        accuracy=proportion(tp + tn, tp + tn + fp + fn, confidence),
    )
