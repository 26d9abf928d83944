"""Fusion calibration of a trial: fit the glaucoma fusion on the trial's reference standard, find the fit a
case's page uses. The method is in diagnosis/networks/fusion.py (`fit_fusion_calibration`)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Count, Q

from diagnosis.models import FusionCalibration, ModelVersion, Prediction, ResultKind, Task
from diagnosis.networks.fusion import FusionWeights, GlaucomaEvidence, fit_fusion_calibration
from diagnosis.results import deciding
from platform_core.accounts.models import User
from platform_core.audit.services import audited_save
from platform_core.errors import ApplicationError
from trials.models import Case, Trial

GLAUCOMA_LABELS = {"yes": 1, "no": 0}  # "suspect" is neither, and is left out of the fit


def _labelled_cases(trial: Trial):
    return Case.objects.filter(subject__trial=trial, reference__glaucoma__in=GLAUCOMA_LABELS).exclude(status="excluded")


def _most_used_model(trial: Trial, task: str) -> ModelVersion | None:
    """The version of `task` with the most current predictions on the trial's labelled cases."""
    return (
        ModelVersion.objects.filter(task=task)
        .annotate(
            n=Count(
                "predictions",
                filter=Q(predictions__case__in=_labelled_cases(trial), predictions__job__is_current=True),
            )
        )
        .filter(n__gt=0)
        .order_by("-n", "-created_at")
        .first()
    )


def _evidence(prediction_fundus: Prediction | None, prediction_vf: Prediction | None, rnfl: float | None):
    return GlaucomaEvidence(
        fundus_probability=prediction_fundus.glaucoma_probability if prediction_fundus else None,
        vf_probability=prediction_vf.glaucoma_probability if prediction_vf else None,
        vf_reliable=(prediction_vf.kind == ResultKind.PREDICTION) if prediction_vf else None,
        rnfl_thickness_um=rnfl,
    )


def _check_task(model: ModelVersion | None, task: str, what: str) -> None:
    if model is not None and model.task != task:
        raise ApplicationError(f"{model} is not a {what} model (its task is {model.get_task_display()}).")


@transaction.atomic
def fusion_calibration_fit(
    *,
    actor: User | None,
    trial: Trial,
    fundus_model: ModelVersion | None = None,
    vf_model: ModelVersion | None = None,
) -> FusionCalibration:
    """Fit the trial's glaucoma fusion for these model versions (default: the fundus and visual-field
    versions with the most predictions on the trial's labelled cases) on every non-excluded case with a
    yes/no glaucoma reference standard, using their current predictions and recorded RNFL thickness.
    Refused with the counts when there are too few labelled eyes of either class; nothing is stored then."""
    _check_task(fundus_model, Task.GLAUCOMA_FUNDUS, "fundus glaucoma")
    _check_task(vf_model, Task.GLAUCOMA_VF, "visual-field glaucoma")
    fundus_model = fundus_model or _most_used_model(trial, Task.GLAUCOMA_FUNDUS)
    vf_model = vf_model or _most_used_model(trial, Task.GLAUCOMA_VF)
    cases = list(_labelled_cases(trial).select_related("reference"))
    if not cases:
        raise ApplicationError(f"Trial {trial.slug} has no case with a yes/no glaucoma reference standard.")
    models = [m for m in (fundus_model, vf_model) if m is not None]
    # A job writes one prediction per photograph: the case's evidence is the one the case page shows, the
    # highest glaucoma probability among them (diagnosis.results.deciding).
    by_case_model: dict[tuple[str, str], list[Prediction]] = {}
    for p in Prediction.objects.filter(case__in=cases, model_version__in=models, job__is_current=True).order_by(
        "created_at"
    ):
        by_case_model.setdefault((str(p.case_id), str(p.model_version_id)), []).append(p)
    predictions: dict[tuple[str, str], Prediction] = {
        key: deciding(group, "glaucoma_probability") or group[0] for key, group in by_case_model.items()
    }
    evidence, labels = [], []
    for case in cases:
        evidence.append(
            _evidence(
                predictions.get((str(case.pk), str(fundus_model.pk))) if fundus_model else None,
                predictions.get((str(case.pk), str(vf_model.pk))) if vf_model else None,
                case.oct_rnfl_thickness_um,
            )
        )
        labels.append(GLAUCOMA_LABELS[case.reference.glaucoma])
    try:
        fit = fit_fusion_calibration(evidence, labels)
    except ValueError as exc:
        raise ApplicationError(f"Cannot calibrate the fusion of trial {trial.slug}: {exc}") from None
    calibration = FusionCalibration(
        trial=trial,
        fundus_model=fundus_model,
        vf_model=vf_model,
        weights=fit.weights.to_dict(),
        eyes=fit.eyes,
        positives=fit.positives,
        report=fit.modalities,
        fitted_by=actor,
    )
    audited_save(calibration, actor=actor, action="fusion.calibrate", trial_ref=trial.slug, force_insert=True)
    return calibration


def fusion_calibration_for(
    *, trial_id: Any, fundus_model_id: Any | None, vf_model_id: Any | None
) -> FusionCalibration | None:
    """The newest calibration of the trial fitted for the model versions that produced a case's outputs
    (a case without a modality's output accepts any version of it)."""
    calibrations = FusionCalibration.objects.filter(trial_id=trial_id)
    if fundus_model_id is not None:
        calibrations = calibrations.filter(fundus_model_id=fundus_model_id)
    if vf_model_id is not None:
        calibrations = calibrations.filter(vf_model_id=vf_model_id)
    return calibrations.order_by("-created_at").first()


def fusion_weights_of(calibration: FusionCalibration | None) -> FusionWeights:
    return FusionWeights.from_dict(calibration.weights) if calibration is not None else FusionWeights()
