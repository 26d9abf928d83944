"""Obuchowski-Rockette (OR) multi-reader multi-case analysis with Hillis (2007) denominator degrees of freedom.

Input: ratings of shape (modalities T, readers R, cases N) for a fully crossed study (every reader rated every
case in every modality) and the truth of each case. The figure of merit per reader and modality is the
empirical AUC (trapezoidal, = Mann-Whitney with ties 1/2), or sensitivity / specificity at a threshold
(rating >= threshold is positive).

The OR model sees the figures of merit θ_tr as reader x modality ANOVA data whose errors are correlated through
the shared cases; their covariance matrix is estimated by the case jackknife (default) or, for the AUC, by
DeLong's method. Its averages are Var (diagonal), Cov1 (same reader, different modality), Cov2 (same modality,
different reader) and Cov3 (different reader and modality). With the mean squares MS(T), MS(R), MS(T×R):

* random readers and random cases (RRRC):  F = MS(T) / (MS(T×R) + R·max(Cov2 − Cov3, 0)) on (T−1, ddf_H) with
  ddf_H = (MS(T×R) + R·max(Cov2 − Cov3, 0))² / (MS(T×R)² / ((T−1)(R−1)))   (Hillis 2007);
* fixed readers, random cases (FRRC): χ² = (T−1)·MS(T) / (Var − Cov1 + (R−1)·max(Cov2 − Cov3, 0)) on T−1 df;
* random readers, fixed cases (RRFC): F = MS(T) / MS(T×R) on (T−1, (T−1)(R−1)).

Each gives a confidence interval for each difference of reader-averaged figures of merit,
difference ± q·sqrt(2/R · denominator). For sensitivity the jackknife runs over the diseased cases only, for
specificity over the non-diseased only (the other cases do not enter the figure of merit).

Reproduces OR-DBM MRMC 2.51, MRMCaov and RJafroc on the Van Dyke, Franken and CAD-vs-radiologists data to
their printed digits (tests/evaluation/test_stats_mrmc.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats as sps

from evaluation.stats.proportions import binary_truth
from evaluation.stats.roc import placements

FigureOfMerit = Literal["auc", "sensitivity", "specificity"]
CovarianceMethod = Literal["jackknife", "delong"]


@dataclass(frozen=True)
class VarianceComponents:
    """OR covariances (per the cases of this study) and mean squares of the reader x modality figures of merit."""

    var: float
    cov1: float
    cov2: float
    cov3: float
    ms_t: float
    ms_r: float
    ms_tr: float
    var_r: float
    var_tr: float
    readers: int
    modalities: int
    cases: int  # the cases the covariances refer to (diseased only for sensitivity, non-diseased for specificity)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Difference:
    first: int
    second: int
    estimate: float
    se: float
    ci: tuple[float, float]

    def as_dict(self) -> dict:
        return {
            "first": self.first,
            "second": self.second,
            "estimate": self.estimate,
            "se": self.se,
            "ci95": list(self.ci),
        }


@dataclass(frozen=True)
class OrTest:
    """One OR analysis. ``statistic`` is F (ddf finite) or χ² (ddf None, FRRC)."""

    analysis: str
    statistic: float
    ndf: int
    ddf: float | None
    p_value: float
    differences: list[Difference]

    def as_dict(self) -> dict:
        return {
            "analysis": self.analysis,
            "statistic": self.statistic,
            "ndf": self.ndf,
            "ddf": self.ddf,
            "p_value": self.p_value,
            "differences": [d.as_dict() for d in self.differences],
        }


@dataclass(frozen=True)
class ModalityEstimate:
    """A modality's reader-averaged figure of merit with its RRRC interval (Hillis 2007, single modality)."""

    estimate: float
    se: float
    df: float
    ci: tuple[float, float]

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "se": self.se, "df": self.df, "ci95": list(self.ci)}


@dataclass(frozen=True)
class MrmcResult:
    figure_of_merit: str
    covariance: str
    foms: np.ndarray  # (T, R)
    modalities: list[ModalityEstimate]
    components: VarianceComponents
    rrrc: OrTest
    frrc: OrTest
    rrfc: OrTest
    threshold: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "figure_of_merit": self.figure_of_merit,
            "threshold": self.threshold,
            "covariance": self.covariance,
            "foms": self.foms.tolist(),
            "modalities": [m.as_dict() for m in self.modalities],
            "variance_components": self.components.as_dict(),
            "random_readers_random_cases": self.rrrc.as_dict(),
            "fixed_readers_random_cases": self.frrc.as_dict(),
            "random_readers_fixed_cases": self.rrfc.as_dict(),
            "notes": list(self.notes),
        }


def _checked_design(
    ratings: np.ndarray, truth: np.ndarray | list, comparison: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(ratings, dtype=float)
    if values.ndim != 3:
        raise ValueError("ratings must have the shape (modalities, readers, cases)")
    diseased = binary_truth(truth)
    if values.shape[2] != diseased.size:
        raise ValueError(f"ratings cover {values.shape[2]} cases but truth has {diseased.size}")
    if not np.all(np.isfinite(values)):
        raise ValueError("every rating must be a finite number (the design must be fully crossed)")
    if comparison and (values.shape[0] < 2 or values.shape[1] < 2):
        raise ValueError("an OR-MRMC analysis needs at least two modalities and two readers")
    if diseased.all() or not diseased.any():
        raise ValueError("an OR-MRMC analysis needs both diseased and non-diseased cases")
    return values, diseased


def foms_and_jackknife(
    ratings: np.ndarray,
    truth: np.ndarray | list,
    figure_of_merit: FigureOfMerit = "auc",
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Figures of merit (T, R) and their case-jackknife values (T, R, K): K = all cases for the AUC, the diseased
    cases for sensitivity, the non-diseased cases for specificity. Closed forms, no refitting: removing a diseased
    case k from an AUC over m diseased cases gives (m·AUC − V10_k)/(m − 1), and likewise for the others."""
    values, diseased = _checked_design(ratings, truth, comparison=False)
    t_count, r_count, _ = values.shape
    if figure_of_merit == "auc":
        m, n = int(diseased.sum()), int((~diseased).sum())
        if m < 2 or n < 2:
            raise ValueError("the case jackknife needs at least two diseased and two non-diseased cases")
        foms = np.empty((t_count, r_count))
        jack = np.empty(values.shape)
        for t in range(t_count):
            for r in range(r_count):
                found = placements(diseased, values[t, r])
                auc = found.auc
                foms[t, r] = auc
                jack[t, r, diseased] = (m * auc - found.v10) / (m - 1)
                jack[t, r, ~diseased] = (n * auc - found.v01) / (n - 1)
        return foms, jack
    if figure_of_merit in ("sensitivity", "specificity"):
        if threshold is None:
            raise ValueError(f"{figure_of_merit} needs a threshold (rating >= threshold is positive)")
        cases = diseased if figure_of_merit == "sensitivity" else ~diseased
        correct = values[:, :, cases] >= threshold
        if figure_of_merit == "specificity":
            correct = ~correct
        k = correct.shape[2]
        if k < 2:
            raise ValueError(f"{figure_of_merit} needs at least two cases of its class for the jackknife")
        foms = correct.mean(axis=2)
        jack = (k * foms[:, :, None] - correct) / (k - 1)
        return foms, jack
    raise ValueError(f"figure of merit must be auc, sensitivity or specificity, not {figure_of_merit!r}")


def jackknife_covariance(jack: np.ndarray) -> np.ndarray:
    """Covariance (TR x TR) of the figures of merit from their jackknife values (T, R, K):
    (K − 1)/K · Σ_k (θ_(k) − θ_(.))(θ_(k) − θ_(.))ᵀ."""
    flat = jack.reshape(-1, jack.shape[2])
    k = flat.shape[1]
    centred = flat - flat.mean(axis=1, keepdims=True)
    return (k - 1) / k * (centred @ centred.T)


def delong_covariance_matrix(ratings: np.ndarray, truth: np.ndarray | list) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (T, R) and DeLong's covariance of all T·R AUCs (TR x TR)."""
    values, diseased = _checked_design(ratings, truth)
    t_count, r_count, _ = values.shape
    found = [placements(diseased, values[t, r]) for t in range(t_count) for r in range(r_count)]
    v10 = np.stack([p.v10 for p in found])
    v01 = np.stack([p.v01 for p in found])
    covariance = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    return v10.mean(axis=1).reshape(t_count, r_count), covariance


def covariance_averages(covariance: np.ndarray, modalities: int, readers: int) -> tuple[float, float, float, float]:
    """Var, Cov1, Cov2, Cov3 from the TR x TR covariance (index t·R + r)."""
    t_index = np.repeat(np.arange(modalities), readers)
    r_index = np.tile(np.arange(readers), modalities)
    same_t = t_index[:, None] == t_index[None, :]
    same_r = r_index[:, None] == r_index[None, :]
    return (
        float(covariance[same_t & same_r].mean()),
        float(covariance[~same_t & same_r].mean()),
        float(covariance[same_t & ~same_r].mean()),
        float(covariance[~same_t & ~same_r].mean()),
    )


def _ratio(numerator: float, denominator: float) -> float:
    """A test statistic: nan when there is neither a difference nor any variance (the test is undefined, e.g. every
    reader has sensitivity 1 in both modalities), inf for a difference without variance."""
    if denominator > 0:
        return numerator / denominator
    return float("inf") if numerator > 0 else float("nan")


def _t_quantile(confidence: float, df: float) -> float:
    q = 0.5 + confidence / 2
    return float(sps.norm.ppf(q)) if not np.isfinite(df) else float(sps.t.ppf(q, df))


def or_analysis(
    foms: np.ndarray,
    covariance: np.ndarray,
    cases: int,
    confidence: float = 0.95,
) -> tuple[VarianceComponents, OrTest, OrTest, OrTest, list[ModalityEstimate]]:
    """The OR tests from figures of merit (T, R) and their covariance (TR x TR)."""
    t_count, r_count = foms.shape
    var, cov1, cov2, cov3 = covariance_averages(covariance, t_count, r_count)
    grand = foms.mean()
    by_t = foms.mean(axis=1)
    by_r = foms.mean(axis=0)
    ms_t = r_count * float(((by_t - grand) ** 2).sum()) / (t_count - 1)
    ms_r = t_count * float(((by_r - grand) ** 2).sum()) / (r_count - 1)
    interaction = foms - by_t[:, None] - by_r[None, :] + grand
    ms_tr = float((interaction**2).sum()) / ((t_count - 1) * (r_count - 1))
    var_tr = ms_tr - var + cov1 + (cov2 - cov3)
    var_r = (ms_r - var_tr - var - (t_count - 1) * cov1 + cov2 + (t_count - 1) * cov3) / t_count
    components = VarianceComponents(
        var=var,
        cov1=cov1,
        cov2=cov2,
        cov3=cov3,
        ms_t=ms_t,
        ms_r=ms_r,
        ms_tr=ms_tr,
        var_r=var_r,
        var_tr=var_tr,
        readers=r_count,
        modalities=t_count,
        cases=cases,
    )
    ndf = t_count - 1
    pairs = [(a, b) for a in range(t_count) for b in range(a + 1, t_count)]

    def differences(denominator: float, df: float) -> list[Difference]:
        se = float(np.sqrt(max(2 * denominator / r_count, 0.0)))
        q = _t_quantile(confidence, df)
        found = []
        for a, b in pairs:
            estimate = float(by_t[a] - by_t[b])
            found.append(
                Difference(first=a, second=b, estimate=estimate, se=se, ci=(estimate - q * se, estimate + q * se))
            )
        return found

    # Random readers, random cases (Hillis 2007 ddf).
    den_rrrc = ms_tr + r_count * max(cov2 - cov3, 0.0)
    ddf_h = den_rrrc**2 / (ms_tr**2 / ((t_count - 1) * (r_count - 1))) if ms_tr > 0 else float("inf")
    f_rrrc = _ratio(ms_t, den_rrrc)
    rrrc = OrTest(
        analysis="random readers, random cases",
        statistic=f_rrrc,
        ndf=ndf,
        ddf=ddf_h,
        p_value=float(sps.f.sf(f_rrrc, ndf, ddf_h)) if np.isfinite(ddf_h) else float(sps.chi2.sf(f_rrrc * ndf, ndf)),
        differences=differences(den_rrrc, ddf_h),
    )
    # Fixed readers, random cases.
    den_frrc = var - cov1 + (r_count - 1) * max(cov2 - cov3, 0.0)
    chi2 = _ratio(ndf * ms_t, den_frrc)
    frrc = OrTest(
        analysis="fixed readers, random cases",
        statistic=chi2,
        ndf=ndf,
        ddf=None,
        p_value=float(sps.chi2.sf(chi2, ndf)),
        differences=differences(den_frrc, float("inf")),
    )
    # Random readers, fixed cases.
    ddf_rrfc = float((t_count - 1) * (r_count - 1))
    f_rrfc = _ratio(ms_t, ms_tr)
    rrfc = OrTest(
        analysis="random readers, fixed cases",
        statistic=f_rrfc,
        ndf=ndf,
        ddf=ddf_rrfc,
        p_value=float(sps.f.sf(f_rrfc, ndf, ddf_rrfc)),
        differences=differences(ms_tr, ddf_rrfc),
    )
    single = [
        reader_average(
            foms[t], covariance[t * r_count : (t + 1) * r_count, t * r_count : (t + 1) * r_count], confidence
        )
        for t in range(t_count)
    ]
    return components, rrrc, frrc, rrfc, single


def reader_average(foms: np.ndarray, covariance: np.ndarray, confidence: float = 0.95) -> ModalityEstimate:
    """One modality's reader-averaged figure of merit with its RRRC interval: the readers' mean square MS_R and
    their between-reader covariance Cov2 give SE² = (MS_R + R·max(Cov2, 0))/R on
    df = (MS_R + R·max(Cov2, 0))² / (MS_R² / (R − 1)) (Hillis 2007)."""
    r_count = foms.size
    if r_count < 2:
        raise ValueError("a reader average with a random-reader interval needs at least two readers")
    mean = float(foms.mean())
    ms_r = float(((foms - mean) ** 2).sum()) / (r_count - 1)
    cov2 = float(covariance[~np.eye(r_count, dtype=bool)].mean())
    denominator = ms_r + r_count * max(cov2, 0.0)
    df = denominator**2 / (ms_r**2 / (r_count - 1)) if ms_r > 0 else float("inf")
    se = float(np.sqrt(denominator / r_count))
    q = _t_quantile(confidence, df)
    return ModalityEstimate(estimate=mean, se=se, df=df, ci=(mean - q * se, mean + q * se))


def or_mrmc(
    ratings: np.ndarray,
    truth: np.ndarray | list,
    figure_of_merit: FigureOfMerit = "auc",
    threshold: float | None = None,
    covariance: CovarianceMethod = "jackknife",
    confidence: float = 0.95,
) -> MrmcResult:
    """OR-MRMC of ratings (T, R, N) against truth (N,): see the module docstring."""
    values, diseased = _checked_design(ratings, truth)
    if covariance == "jackknife":
        foms, jack = foms_and_jackknife(values, diseased, figure_of_merit, threshold)
        matrix = jackknife_covariance(jack)
        cases = jack.shape[2]
    elif covariance == "delong":
        if figure_of_merit != "auc":
            raise ValueError("DeLong covariances exist for the AUC only; use the jackknife for sensitivity/specificity")
        foms, matrix = delong_covariance_matrix(values, diseased)
        cases = diseased.size
    else:
        raise ValueError(f"covariance must be jackknife or delong, not {covariance!r}")
    components, rrrc, frrc, rrfc, single = or_analysis(foms, matrix, cases, confidence)
    notes = []
    if components.cov2 < components.cov3:
        notes.append("Cov2 < Cov3: max(Cov2 - Cov3, 0) = 0, so the Hillis ddf falls back to (T-1)(R-1).")
    return MrmcResult(
        figure_of_merit=figure_of_merit,
        covariance=covariance,
        foms=foms,
        modalities=single,
        components=components,
        rrrc=rrrc,
        frrc=frrc,
        rrfc=rrfc,
        threshold=threshold if figure_of_merit != "auc" else None,
        notes=notes,
    )


def or_mrmc_readers_vs_standalone(
    reader_ratings: np.ndarray,
    standalone: np.ndarray | list,
    truth: np.ndarray | list,
    figure_of_merit: FigureOfMerit = "auc",
    threshold: float | None = None,
    covariance: CovarianceMethod = "jackknife",
    confidence: float = 0.95,
) -> MrmcResult:
    """Readers (R, N) against a standalone algorithm (N,) on the same cases: the algorithm is a second modality
    whose rating is the same for every reader. Modality 0 is the readers, 1 the algorithm, so the difference is
    readers − algorithm. With two modalities this is exactly Hillis's single-treatment readers-vs-standalone
    analysis (RJafroc ``StCadVsRad``, "1T-RRRC"): F = t², the same ddf and interval."""
    readers = np.asarray(reader_ratings, dtype=float)
    algorithm = np.asarray(standalone, dtype=float)
    if readers.ndim != 2 or algorithm.shape != (readers.shape[1],):
        raise ValueError("reader ratings must be (readers, cases) and the standalone scores (cases,)")
    stacked = np.stack([readers, np.broadcast_to(algorithm, readers.shape)])
    return or_mrmc(stacked, truth, figure_of_merit, threshold, covariance, confidence)
