"""Per-eye glaucoma probability from whatever evidence the eye has: fundus net, visual field net, OCT RNFL.

Method: evidence is added in log-odds (logit) space, as log-likelihood ratios (LLR) against the prior.

- A network's probability p, trained at prevalence pi, carries LLR = logit(p) - logit(pi).
- OCT: the average peripapillary RNFL thickness t (um) carries the LLR of two equal-variance Gaussians,
  normal eyes N(95, 11^2) and glaucomatous eyes N(70, 11^2) (approximate spectral-domain OCT figures;
  thickness differs between devices, so a trial should refit these for its own OCT):
  LLR(t) = (mu_g - mu_n) / sd^2 * (t - (mu_g + mu_n) / 2), i.e. about -0.21 per um around 82.5 um.
  It is clipped to +-`rnfl_llr_clip` so one measurement (segmentation failures happen) cannot decide alone.
- posterior logit = logit(prior) + D(k) * sum_m w_m * LLR_m over the k modalities present, with
  D(k) = 1 / (1 + rho * (k - 1)). The modalities measure the same disease and are correlated; adding
  their LLRs as if independent would overstate certainty. D is the usual effective-number discount for
  k equicorrelated sources (`correlation` rho = 0.3 by default). With one modality D = 1 and, at the
  default weights, the result is that modality's own probability.
- Missing modalities contribute nothing: an absent term is "no evidence", so the posterior is never
  pulled towards or away from glaucoma by what was not measured. A visual field marked unreliable by the
  caller (the reliability rule set is the caller's, see DOMAIN.md) is excluded the same way and reported
  in `excluded`, as are values that cannot be used. With no usable modality the probability is None,
  not the prior, so a report cannot show a number that no measurement supports.

The default weights are starting values chosen by judgement, not fitted, and the default prior is 50%:
`FusionWeights().calibrated` is False and a report must not show the fused number as a calibrated
probability. `fit_fusion_calibration` fits them on a trial's reference standard in two steps:

1. Platt scaling per modality: on the eyes where the modality is usable, logistic regression of the label
   on the modality's raw score s (logit of the network's probability; the Gaussian RNFL LLR for OCT) gives
   a * s + b, the calibrated log-odds at that subset's prevalence pi_m, so the calibrated
   LLR_m = a * s + b - logit(pi_m). A network trained on other data (or overconfident) is rescaled to
   what its outputs mean in this trial.
2. `fit_fusion_weights` fits the per-modality weights and the intercept (the prior) by L2-regularised
   logistic regression on the discounted calibrated LLRs (missing = 0, as at prediction time), the
   "small learned logistic layer" variant.

The fitted prior (the intercept) comes out close to the prevalence in the trial's reference standard (a
test checks this on a 5% population); `with_prior` moves the result to another prevalence (Bayes: only
the prior term changes).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize

FUNDUS = "fundus"
VISUAL_FIELD = "visual_field"
OCT_RNFL = "oct_rnfl"
MODALITIES = (FUNDUS, VISUAL_FIELD, OCT_RNFL)

_PROBABILITY_FLOOR = 1e-4  # a network output of exactly 0 or 1 would be infinite evidence
RNFL_PLAUSIBLE_UM = (20.0, 200.0)


@dataclass(frozen=True)
class FusionWeights:
    prior_probability: float = 0.5
    fundus_training_prevalence: float = 0.5
    vf_training_prevalence: float = 0.5
    fundus_weight: float = 1.0
    vf_weight: float = 1.0
    rnfl_weight: float = 1.0
    correlation: float = 0.3
    rnfl_normal_mean_um: float = 95.0
    rnfl_glaucoma_mean_um: float = 70.0
    rnfl_sd_um: float = 11.0
    rnfl_llr_clip: float = 4.0
    # modality -> [slope, intercept, prevalence] of its Platt scaling; empty: uncalibrated
    platt: dict[str, list[float]] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        """True once fitted on labelled data (Platt scaling of at least one modality)."""
        return bool(self.platt)

    def with_prior(self, prior_probability: float) -> FusionWeights:
        return replace(self, prior_probability=prior_probability)

    def __post_init__(self) -> None:
        for name in ("prior_probability", "fundus_training_prevalence", "vf_training_prevalence"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be strictly between 0 and 1")
        if not 0.0 <= self.correlation < 1.0 or self.rnfl_sd_um <= 0 or self.rnfl_llr_clip <= 0:
            raise ValueError("correlation must be in [0, 1), rnfl_sd_um and rnfl_llr_clip positive")
        for modality, params in self.platt.items():
            if modality not in MODALITIES or len(params) != 3 or not 0.0 < params[2] < 1.0:
                raise ValueError(f"platt[{modality!r}] must be [slope, intercept, prevalence in (0, 1)]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionWeights:
        data = dict(data)
        data["platt"] = {m: [float(v) for v in params] for m, params in data.get("platt", {}).items()}
        return cls(**data)


@dataclass(frozen=True)
class GlaucomaEvidence:
    """What is known about one eye. `vf_reliable` must be stated whenever a VF probability is given."""

    fundus_probability: float | None = None
    vf_probability: float | None = None
    vf_reliable: bool | None = None
    rnfl_thickness_um: float | None = None


@dataclass(frozen=True)
class FusedGlaucoma:
    probability: float | None  # None: no usable modality
    contributions: dict[str, float]  # weighted, discounted LLR per modality used
    used: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)  # modality -> why it was left out
    prior_probability: float = 0.5  # the prior the probability starts from
    calibrated: bool = False  # False: default weights at a 50% prior, not fitted on labelled eyes


def _logit(p: float) -> float:
    p = min(max(p, _PROBABILITY_FLOOR), 1.0 - _PROBABILITY_FLOOR)
    return math.log(p / (1.0 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _rnfl_gaussian_llr(thickness_um: float, weights: FusionWeights) -> float:
    mu_n, mu_g, sd = weights.rnfl_normal_mean_um, weights.rnfl_glaucoma_mean_um, weights.rnfl_sd_um
    return (mu_g - mu_n) / sd**2 * (thickness_um - (mu_g + mu_n) / 2)


def rnfl_log_likelihood_ratio(thickness_um: float, weights: FusionWeights) -> float:
    return _score_llr(OCT_RNFL, _rnfl_gaussian_llr(thickness_um, weights), weights)


def _is_probability(value: float) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value) and 0.0 <= value <= 1.0


def raw_scores(evidence: GlaucomaEvidence, weights: FusionWeights) -> tuple[dict[str, float], dict[str, str]]:
    """Each usable modality's raw score (logit of a network's probability; the unclipped Gaussian LLR of
    the RNFL thickness), and the reasons others were excluded."""
    scores: dict[str, float] = {}
    excluded: dict[str, str] = {}
    if evidence.fundus_probability is not None:
        if _is_probability(evidence.fundus_probability):
            scores[FUNDUS] = _logit(evidence.fundus_probability)
        else:
            excluded[FUNDUS] = f"not a probability: {evidence.fundus_probability!r}"
    if evidence.vf_probability is None and evidence.vf_reliable is False:
        excluded[VISUAL_FIELD] = "visual field unreliable"  # an unreliable field gets no probability at all
    elif evidence.vf_probability is not None:
        if evidence.vf_reliable is None:
            raise ValueError("vf_reliable must be stated (True/False) when a visual-field probability is given")
        if not evidence.vf_reliable:
            excluded[VISUAL_FIELD] = "visual field unreliable"
        elif not _is_probability(evidence.vf_probability):
            excluded[VISUAL_FIELD] = f"not a probability: {evidence.vf_probability!r}"
        else:
            scores[VISUAL_FIELD] = _logit(evidence.vf_probability)
    if evidence.rnfl_thickness_um is not None:
        thickness = evidence.rnfl_thickness_um
        low, high = RNFL_PLAUSIBLE_UM
        if isinstance(thickness, numbers.Real) and math.isfinite(thickness) and low <= thickness <= high:
            scores[OCT_RNFL] = _rnfl_gaussian_llr(thickness, weights)
        else:
            excluded[OCT_RNFL] = f"RNFL thickness {thickness!r} um outside the plausible {low:g}-{high:g} um"
    return scores, excluded


def _score_llr(modality: str, score: float, weights: FusionWeights) -> float:
    """A raw score as a log-likelihood ratio: through the modality's Platt scaling when fitted."""
    if modality in weights.platt:
        slope, intercept, prevalence = weights.platt[modality]
        llr = slope * score + intercept - _logit(prevalence)
    elif modality == FUNDUS:
        llr = score - _logit(weights.fundus_training_prevalence)
    elif modality == VISUAL_FIELD:
        llr = score - _logit(weights.vf_training_prevalence)
    else:
        llr = score
    if modality == OCT_RNFL:  # one measurement (segmentation failures happen) cannot decide alone
        llr = max(-weights.rnfl_llr_clip, min(weights.rnfl_llr_clip, llr))
    return llr


def evidence_terms(evidence: GlaucomaEvidence, weights: FusionWeights) -> tuple[dict[str, float], dict[str, str]]:
    """Unweighted LLR per usable modality, and the reasons others were excluded."""
    scores, excluded = raw_scores(evidence, weights)
    return {m: _score_llr(m, score, weights) for m, score in scores.items()}, excluded


def _modality_weight(weights: FusionWeights, modality: str) -> float:
    return {FUNDUS: weights.fundus_weight, VISUAL_FIELD: weights.vf_weight, OCT_RNFL: weights.rnfl_weight}[modality]


def correlation_discount(count: int, correlation: float) -> float:
    return 1.0 / (1.0 + correlation * (count - 1)) if count > 0 else 0.0


def fuse_glaucoma(evidence: GlaucomaEvidence, weights: FusionWeights | None = None) -> FusedGlaucoma:
    """The eye's glaucoma probability from the modalities present (see the module docstring)."""
    weights = weights or FusionWeights()
    terms, excluded = evidence_terms(evidence, weights)
    if not terms:
        return FusedGlaucoma(
            probability=None,
            contributions={},
            used=(),
            excluded=excluded,
            prior_probability=weights.prior_probability,
            calibrated=weights.calibrated,
        )
    discount = correlation_discount(len(terms), weights.correlation)
    contributions = {m: discount * _modality_weight(weights, m) * llr for m, llr in terms.items()}
    logit = _logit(weights.prior_probability) + sum(contributions.values())
    used = tuple(m for m in MODALITIES if m in terms)
    return FusedGlaucoma(
        probability=_sigmoid(logit),
        contributions=contributions,
        used=used,
        excluded=excluded,
        prior_probability=weights.prior_probability,
        calibrated=weights.calibrated,
    )


def fit_fusion_weights(
    evidence: Sequence[GlaucomaEvidence],
    labels: Sequence[int],
    *,
    base: FusionWeights | None = None,
    l2: float = 1.0,
) -> FusionWeights:
    """Fit the three modality weights and the prior (intercept) by L2-regularised logistic regression.

    The features are each modality's discounted LLR (0 when missing or excluded), exactly as
    `fuse_glaucoma` builds them, so the fitted weights mean the same thing at prediction time. The
    penalty pulls the weights towards 1 (the untrained combination), not towards 0.
    """
    base = base or FusionWeights()
    y = np.asarray(labels, dtype=np.float64)
    if len(evidence) != len(y) or not set(np.unique(y)) <= {0.0, 1.0} or len(np.unique(y)) < 2:
        raise ValueError("need one 0/1 label per eye, with both classes present")
    features = np.zeros((len(evidence), len(MODALITIES)))
    for row, item in enumerate(evidence):
        terms, _ = evidence_terms(item, base)
        discount = correlation_discount(len(terms), base.correlation)
        for column, modality in enumerate(MODALITIES):
            features[row, column] = discount * terms.get(modality, 0.0)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        intercept, w = theta[0], theta[1:]
        z = intercept + features @ w
        # log(1 + exp(z)) - y z, written stably
        nll = np.sum(np.logaddexp(0.0, z) - y * z)
        residual = 1.0 / (1.0 + np.exp(-z)) - y
        penalty = 0.5 * l2 * np.sum((w - 1.0) ** 2)
        gradient = np.concatenate([[residual.sum()], features.T @ residual + l2 * (w - 1.0)])
        return float(nll + penalty), gradient

    start = np.array([_logit(base.prior_probability), 1.0, 1.0, 1.0])
    solution = minimize(loss, start, jac=True, method="L-BFGS-B")
    intercept, fundus_w, vf_w, rnfl_w = solution.x.tolist()
    return replace(
        base,
        prior_probability=_sigmoid(intercept),
        fundus_weight=fundus_w,
        vf_weight=vf_w,
        rnfl_weight=rnfl_w,
    )


PLATT_MIN_PER_CLASS = 3  # fewer eyes of either class: the modality's scaling is not fitted


def platt_scaling(scores: Sequence[float], labels: Sequence[int], *, l2: float = 1e-3) -> tuple[float, float]:
    """Slope a and intercept b of P(y=1 | s) = sigmoid(a s + b), fitted by maximum likelihood with Platt's
    (1999) smoothed targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2), which keep a and b finite when the two
    classes are separated (small trials often are); `l2` is a tiny extra ridge on the slope."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    positives, negatives = float(y.sum()), float(len(y) - y.sum())
    if len(s) != len(y) or positives < 1 or negatives < 1:
        raise ValueError("Platt scaling needs one 0/1 label per score, with both classes present")
    target = np.where(y == 1.0, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] * s + theta[1]
        nll = np.sum(np.logaddexp(0.0, z) - target * z) + 0.5 * l2 * theta[0] ** 2
        residual = 1.0 / (1.0 + np.exp(-z)) - target
        return float(nll), np.array([residual @ s + l2 * theta[0], residual.sum()])

    solution = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    slope, intercept = solution.x.tolist()
    return slope, intercept


@dataclass(frozen=True)
class FusionFit:
    weights: FusionWeights
    eyes: int
    positives: int
    modalities: dict[str, dict[str, Any]]  # per modality: eyes, positives, slope/intercept or why not fitted


def fit_fusion_calibration(
    evidence: Sequence[GlaucomaEvidence], labels: Sequence[int], *, base: FusionWeights | None = None
) -> FusionFit:
    """Platt scaling per modality, then the fusion weights and prior, on labelled eyes (module docstring).

    Raises ValueError (with the counts) when no modality has `PLATT_MIN_PER_CLASS` eyes of each class.
    """
    base = replace(base or FusionWeights(), platt={})
    y = [int(label) for label in labels]
    if len(evidence) != len(y) or not set(y) <= {0, 1}:
        raise ValueError("need one 0/1 label per eye")
    per_modality: dict[str, tuple[list[float], list[int]]] = {m: ([], []) for m in MODALITIES}
    for item, label in zip(evidence, y, strict=True):
        scores, _ = raw_scores(item, base)
        for modality, score in scores.items():
            per_modality[modality][0].append(score)
            per_modality[modality][1].append(label)
    platt: dict[str, list[float]] = {}
    report: dict[str, dict[str, Any]] = {}
    for modality, (modality_scores, modality_labels) in per_modality.items():
        positives = sum(modality_labels)
        negatives = len(modality_labels) - positives
        report[modality] = {"eyes": len(modality_labels), "positives": positives}
        if min(positives, negatives) < PLATT_MIN_PER_CLASS:
            report[modality]["not_fitted"] = (
                f"{positives} glaucomatous and {negatives} healthy eyes with this modality; "
                f"Platt scaling needs at least {PLATT_MIN_PER_CLASS} of each"
            )
            continue
        slope, intercept = platt_scaling(modality_scores, modality_labels)
        platt[modality] = [slope, intercept, positives / len(modality_labels)]
        report[modality].update(slope=slope, intercept=intercept)
    if not platt:
        counts = "; ".join(f"{m}: {r['eyes']} eyes, {r['positives']} glaucomatous" for m, r in report.items())
        raise ValueError(
            f"No modality has {PLATT_MIN_PER_CLASS} glaucomatous and {PLATT_MIN_PER_CLASS} healthy eyes with a "
            f"reference standard ({counts})."
        )
    calibrated = replace(base, platt=platt)
    weights = fit_fusion_weights(evidence, y, base=calibrated) if len(set(y)) == 2 else calibrated
    return FusionFit(weights=weights, eyes=len(y), positives=sum(y), modalities=report)
