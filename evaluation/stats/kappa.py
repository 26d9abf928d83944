"""Agreement: Cohen's kappa (unweighted, linear and quadratic weights) with its large-sample standard error, and
Fleiss' kappa for a fixed number of raters per subject.

The categories are always passed explicitly: weights depend on the distance between categories in the full
list, so building the list from the grades that happen to be used (a DR study where nobody graded 3) would
change a quadratic-weighted kappa.

Cohen's standard error is Fleiss, Cohen & Everitt (1969), the non-null asymptotic variance that R's
``vcd::Kappa`` reports; the interval is kappa ± z·SE and the z test is kappa / SE (as vcd's). Fleiss' kappa
(Fleiss 1971) has the standard error under the null of chance agreement (Fleiss, Nee & Landis 1979), as R's
``irr::kappam.fleiss``, for its z test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

Weights = Literal["unweighted", "linear", "quadratic"]


@dataclass(frozen=True)
class KappaResult:
    kappa: float
    se: float
    ci: tuple[float, float]
    z: float
    p_value: float
    observed_agreement: float
    expected_agreement: float

    def as_dict(self) -> dict:
        return {
            "kappa": self.kappa,
            "se": self.se,
            "ci95": list(self.ci),
            "z": self.z,
            "p_value": self.p_value,
            "observed_agreement": self.observed_agreement,
            "expected_agreement": self.expected_agreement,
        }


def agreement_weights(count: int, weights: Weights) -> np.ndarray:
    """Agreement weights (1 on the diagonal) for ``count`` ordered categories."""
    distance = np.abs(np.subtract.outer(np.arange(count), np.arange(count))) / max(count - 1, 1)
    if weights == "unweighted":
        return np.eye(count)
    if weights == "linear":
        return 1 - distance
    if weights == "quadratic":
        return 1 - distance**2
    raise ValueError(f"weights must be unweighted, linear or quadratic, not {weights!r}")


def _category_index(values: Sequence, categories: Sequence, who: str) -> np.ndarray:
    position = {category: i for i, category in enumerate(categories)}
    if len(position) != len(categories):
        raise ValueError("categories must be distinct")
    unknown = sorted({repr(v) for v in values if v not in position})
    if unknown:
        raise ValueError(f"{who} used categories not in the list {list(categories)!r}: {', '.join(unknown)}")
    return np.fromiter((position[v] for v in values), dtype=np.int64, count=len(values))


def cohen_kappa_table(table: np.ndarray, weights: Weights = "unweighted", confidence: float = 0.95) -> KappaResult:
    """Cohen's kappa from a square table of counts (rows: rater A's category, columns: rater B's)."""
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 2:
        raise ValueError("the agreement table must be square with at least two categories")
    total = counts.sum()
    if total <= 0:
        raise ValueError("the agreement table is empty")
    w = agreement_weights(counts.shape[0], weights)
    p = counts / total
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    observed = float((w * p).sum())
    expected = float((w * np.outer(rows, cols)).sum())
    if expected >= 1:
        raise ValueError("kappa is undefined: chance agreement is 1 (both raters used one category only)")
    kappa = (observed - expected) / (1 - expected)
    row_mean_w = w @ cols  # w̄_i. = Σ_j p_.j w_ij
    col_mean_w = rows @ w  # w̄_.j = Σ_i p_i. w_ij
    inner = (w - np.add.outer(row_mean_w, col_mean_w) * (1 - kappa)) ** 2
    variance = ((p * inner).sum() - (kappa - expected * (1 - kappa)) ** 2) / (total * (1 - expected) ** 2)
    se = float(np.sqrt(max(variance, 0.0)))
    z = float(kappa / se) if se > 0 else float("nan")  # Wald z, as vcd::Kappa
    q = float(sps.norm.ppf(0.5 + confidence / 2))
    return KappaResult(
        kappa=float(kappa),
        se=se,
        ci=(float(kappa - q * se), float(kappa + q * se)),
        z=z,
        p_value=float(2 * sps.norm.sf(abs(z))) if np.isfinite(z) else float("nan"),
        observed_agreement=observed,
        expected_agreement=expected,
    )


def cohen_kappa(
    rater_a: Sequence,
    rater_b: Sequence,
    categories: Sequence,
    weights: Weights = "unweighted",
    confidence: float = 0.95,
) -> KappaResult:
    """Cohen's kappa of two raters on the same subjects; ``categories`` in their order (for the weights)."""
    if len(rater_a) != len(rater_b):
        raise ValueError(f"rater A rated {len(rater_a)} subjects but rater B {len(rater_b)}")
    if len(rater_a) == 0:
        raise ValueError("no subjects to compare")
    a = _category_index(rater_a, categories, "rater A")
    b = _category_index(rater_b, categories, "rater B")
    k = len(categories)
    table = np.bincount(a * k + b, minlength=k * k).reshape(k, k)
    return cohen_kappa_table(table, weights, confidence)


def fleiss_kappa_counts(counts: np.ndarray, confidence: float = 0.95) -> KappaResult:
    """Fleiss' kappa from a subjects x categories table of how many raters chose each category (the same number
    of raters for every subject)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 2:
        raise ValueError("the counts table must be subjects x categories with at least two categories")
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("every subject needs the same number of ratings, at least two")
    n_raters, n_subjects = raters[0], table.shape[0]
    p_category = table.sum(axis=0) / (n_subjects * n_raters)
    q_category = 1 - p_category
    per_subject = ((table * table).sum(axis=1) - n_raters) / (n_raters * (n_raters - 1))
    observed = float(per_subject.mean())
    expected = float((p_category**2).sum())
    if expected >= 1:
        raise ValueError("kappa is undefined: every rating is in one category")
    kappa = (observed - expected) / (1 - expected)
    pq = float((p_category * q_category).sum())
    null_variance = (
        2
        / (pq**2 * n_subjects * n_raters * (n_raters - 1))
        * (pq**2 - (p_category * q_category * (q_category - p_category)).sum())
    )
    se = float(np.sqrt(null_variance))
    z = kappa / se
    q = float(sps.norm.ppf(0.5 + confidence / 2))
    return KappaResult(
        kappa=float(kappa),
        se=se,
        ci=(float(kappa - q * se), float(kappa + q * se)),
        z=float(z),
        p_value=float(2 * sps.norm.sf(abs(z))),
        observed_agreement=observed,
        expected_agreement=expected,
    )


def fleiss_kappa(ratings: Sequence[Sequence], categories: Sequence, confidence: float = 0.95) -> KappaResult:
    """Fleiss' kappa from one row per subject holding that subject's ratings (any rater order)."""
    k = len(categories)
    rows = [_category_index(list(row), categories, f"subject {i + 1}") for i, row in enumerate(ratings)]
    if not rows:
        raise ValueError("no subjects to compare")
    counts = np.stack([np.bincount(row, minlength=k) for row in rows])
    return fleiss_kappa_counts(counts, confidence)


def cohen_kappas(tables: np.ndarray, weights: Weights = "unweighted") -> np.ndarray:
    """Cohen's kappa of each of a stack of square count tables (..., k, k) at once, without standard errors (a
    reader agreement matrix): the same kappa as ``cohen_kappa_table``; nan where a table is empty or kappa is
    undefined (chance agreement 1)."""
    counts = np.asarray(tables, dtype=float)
    if counts.ndim < 2 or counts.shape[-1] != counts.shape[-2] or counts.shape[-1] < 2:
        raise ValueError("the agreement tables must be square with at least two categories")
    w = agreement_weights(counts.shape[-1], weights)
    total = counts.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total[..., None, None]
        rows, cols = p.sum(axis=-1), p.sum(axis=-2)
        observed = (w * p).sum(axis=(-2, -1))
        expected = np.einsum("...i,ij,...j->...", rows, w, cols)
        kappa = (observed - expected) / (1 - expected)
    return np.where((total > 0) & (expected < 1), kappa, np.nan)
