"""Power and sample size of an OR-MRMC comparison of two modalities (random readers, random cases), from the
variance components of a pilot or a running study (Hillis & Obuchowski; Hillis, Obuchowski & Berbaum 2011,
"Power estimation for multireader ROC methods").

A study with R readers and N cases, planned from components estimated on N0 cases, has error covariances
scaled by N0/N (the figure-of-merit variance falls as 1/cases at the same prevalence), and the reader x modality
variance σ²_TR unchanged. For a true difference δ:

    D    = σ²_TR + (N0/N)·(Var − Cov1 + (R − 1)·(Cov2 − Cov3))   expected RRRC denominator
    M    = σ²_TR + (N0/N)·(Var − Cov1 − (Cov2 − Cov3))           expected MS(T×R)
    λ    = R·δ² / (2·D)                                            non-centrality
    ddf  = D² / (M² / (R − 1))                                      Hillis ddf
    power = P(F(1, ddf; λ) > F_{1−α}(1, ddf))                      non-central F

Negative estimates of σ²_TR, Var − Cov1 and Cov2 − Cov3 are set to 0 (no variance may be negative). For
sensitivity or specificity the cases are those of the class the figure of merit uses (diseased, resp.
non-diseased). tests/evaluation/test_stats_power.py checks it against RJafroc's published power and sample
sizes for Van Dyke (``SsPowerGivenJK``, ``SsSampleSizeKGivenJ``) and against a simulation of the OR model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from evaluation.stats.mrmc import VarianceComponents


@dataclass(frozen=True)
class PowerResult:
    power: float
    readers: int
    cases: int
    effect: float
    noncentrality: float
    ddf: float

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _positive_parts(components: VarianceComponents) -> tuple[float, float, float]:
    return (
        max(components.var_tr, 0.0),
        max(components.var - components.cov1, 0.0),
        max(components.cov2 - components.cov3, 0.0),
    )


def or_power(
    components: VarianceComponents, effect: float, readers: int, cases: int, alpha: float = 0.05
) -> PowerResult:
    """Power of the two-sided RRRC test of two modalities to detect a difference ``effect`` in the figure of merit
    with ``readers`` readers and ``cases`` cases (see the module docstring)."""
    if readers < 2:
        raise ValueError("an OR-MRMC study needs at least two readers")
    if cases < 1:
        raise ValueError("an OR-MRMC study needs cases")
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie between 0 and 1")
    var_tr, within, between = _positive_parts(components)
    scale = components.cases / cases
    expected_denominator = var_tr + scale * (within + (readers - 1) * between)
    expected_ms_tr = var_tr + scale * max(within - between, 0.0)
    if expected_denominator <= 0:
        raise ValueError("the variance components are all zero: power is undefined")
    noncentrality = readers * effect**2 / (2 * expected_denominator)
    ddf = expected_denominator**2 / (expected_ms_tr**2 / (readers - 1)) if expected_ms_tr > 0 else float("inf")
    if np.isfinite(ddf):
        critical = float(sps.f.ppf(1 - alpha, 1, ddf))
        # scipy's non-central F is wrong at non-centrality 0 (it returns sf − 1), so the central one is used there.
        power = float(sps.ncf.sf(critical, 1, ddf, noncentrality) if noncentrality > 0 else sps.f.sf(critical, 1, ddf))
    else:
        critical = float(sps.chi2.ppf(1 - alpha, 1))
        power = float(sps.ncx2.sf(critical, 1, noncentrality) if noncentrality > 0 else sps.chi2.sf(critical, 1))
    return PowerResult(power=power, readers=readers, cases=cases, effect=effect, noncentrality=noncentrality, ddf=ddf)


def _smallest(predicate, low: int, ceiling: int) -> int | None:
    """Smallest integer n in [low, ceiling] where the monotone ``predicate`` holds, or None."""
    if predicate(low):
        return low
    high = low
    while not predicate(high):
        if high >= ceiling:
            return None
        high = min(high * 2, ceiling)
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    return high


def cases_for_power(
    components: VarianceComponents,
    effect: float,
    readers: int,
    target_power: float = 0.8,
    alpha: float = 0.05,
    max_cases: int = 1_000_000,
) -> int | None:
    """The fewest cases that give ``target_power`` with ``readers`` readers, or None when no number of cases
    does (σ²_TR alone then caps the power: add readers)."""
    return _smallest(lambda n: or_power(components, effect, readers, n, alpha).power >= target_power, 1, max_cases)


def readers_for_power(
    components: VarianceComponents,
    effect: float,
    cases: int,
    target_power: float = 0.8,
    alpha: float = 0.05,
    max_readers: int = 10_000,
) -> int | None:
    """The fewest readers that give ``target_power`` with ``cases`` cases, or None within ``max_readers``."""
    return _smallest(lambda r: or_power(components, effect, r, cases, alpha).power >= target_power, 2, max_readers)


@dataclass(frozen=True)
class StudyPlan:
    """Where a running study stands for a difference ``effect``: its power now, and how many more cases (same
    readers) or more readers (same cases) reach ``target_power`` (None: not reachable that way)."""

    effect: float
    target_power: float
    current: PowerResult
    cases_needed: int | None
    more_cases: int | None
    readers_needed: int | None
    more_readers: int | None

    def as_dict(self) -> dict:
        return {
            "effect": self.effect,
            "target_power": self.target_power,
            "current": self.current.as_dict(),
            "cases_needed": self.cases_needed,
            "more_cases": self.more_cases,
            "readers_needed": self.readers_needed,
            "more_readers": self.more_readers,
        }

    def sentence(self) -> str:
        ways = []
        if self.more_cases is not None:
            ways.append(f"{self.more_cases} more cases ({self.cases_needed} in all)")
        if self.more_readers is not None:
            ways.append(f"{self.more_readers} more readers ({self.readers_needed} in all)")
        head = f"Power now {self.current.power:.3f} for a difference of {self.effect:g}"
        if not ways:
            return (
                f"{head}: neither more cases nor more readers within the search limits reach {self.target_power:.0%}."
            )
        return f"{head}; {' or '.join(ways)} give {self.target_power:.0%} power."


def study_plan(
    components: VarianceComponents, effect: float, target_power: float = 0.8, alpha: float = 0.05
) -> StudyPlan:
    """ "N more cases or R more readers give 80% power for this difference", from a study's own components."""
    if effect == 0:
        raise ValueError("the difference to detect must not be zero")
    readers, cases = components.readers, components.cases
    cases_needed = cases_for_power(components, effect, readers, target_power, alpha)
    readers_needed = readers_for_power(components, effect, cases, target_power, alpha)
    return StudyPlan(
        effect=effect,
        target_power=target_power,
        current=or_power(components, effect, readers, cases, alpha),
        cases_needed=cases_needed,
        more_cases=None if cases_needed is None else max(cases_needed - cases, 0),
        readers_needed=readers_needed,
        more_readers=None if readers_needed is None else max(readers_needed - readers, 0),
    )
