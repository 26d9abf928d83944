"""Reads of models, jobs and predictions, scoped like the cases they belong to."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from diagnosis.models import InferenceJob, ModelVersion, Prediction, ResultKind
from diagnosis.networks.fusion import FUNDUS, OCT_RNFL, VISUAL_FIELD, GlaucomaEvidence, fuse_glaucoma
from platform_core.accounts.models import User
from trials.models import Case
from trials.selectors import cases_for, reader_trial_ids


def _unblinded_cases(user: User) -> QuerySet[Case, Any]:
    """Cases the user may see, less those of trials where they read: a reader never sees AI outputs, also
    when they hold another role (say, coordinator) in the same trial."""
    return cases_for(user).exclude(subject__trial__in=reader_trial_ids(user)).values("pk")


def jobs_for(user: User) -> QuerySet[InferenceJob]:
    """Current inference jobs (on the case's present files) of cases the user may see unblinded."""
    return InferenceJob.objects.filter(case__in=_unblinded_cases(user), is_current=True).select_related("model_version")


def predictions_for(user: User) -> QuerySet[Prediction]:
    """Predictions of current jobs of cases the user may see unblinded."""
    return Prediction.objects.filter(case__in=_unblinded_cases(user), job__is_current=True).select_related(
        "model_version", "job"
    )


MODALITY_LABELS = {FUNDUS: "fundus photograph", VISUAL_FIELD: "visual field", OCT_RNFL: "OCT RNFL thickness"}


def fused_glaucoma(predictions: list[Prediction], rnfl_thickness_um: float | None = None) -> dict[str, Any] | None:
    """Per-eye glaucoma probability from this case's model outputs and its recorded OCT RNFL thickness
    (see diagnosis/networks/fusion.py); None when the eye has none of them."""
    vf = next((p for p in predictions if p.model_version.spec.glaucoma_evidence == VISUAL_FIELD), None)
    fundus = next((p for p in predictions if p.model_version.spec.glaucoma_evidence == FUNDUS), None)
    if vf is None and fundus is None and rnfl_thickness_um is None:
        return None
    evidence = GlaucomaEvidence(
        fundus_probability=fundus.glaucoma_probability if fundus is not None else None,
        vf_probability=vf.glaucoma_probability if vf is not None else None,
        vf_reliable=(vf.kind == ResultKind.PREDICTION) if vf is not None else None,
        rnfl_thickness_um=rnfl_thickness_um,
    )
    result = fuse_glaucoma(evidence)
    return {
        "probability": result.probability,
        "used": list(result.used),
        "used_labels": [MODALITY_LABELS[m] for m in result.used],
        "excluded": {MODALITY_LABELS[m]: why for m, why in result.excluded.items()},
    }


def case_inference_context(*, user: User, case: Case) -> dict[str, Any]:
    """Inference jobs, predictions and the fused glaucoma probability of a case, for its page (nothing of
    them for a reader of the case's trial: `blinded`)."""
    if reader_trial_ids(user).filter(pk=case.subject.trial_id).exists():
        return {"blinded": True, "inference_jobs": [], "predictions": [], "fused_glaucoma": None, "jobs_pending": False}
    jobs = list(jobs_for(user).filter(case=case).order_by("model_version__name"))
    predictions = list(predictions_for(user).filter(case=case).order_by("model_version__name"))
    return {
        "inference_jobs": jobs,
        "predictions": predictions,
        "fused_glaucoma": fused_glaucoma(predictions, case.oct_rnfl_thickness_um),
        "jobs_pending": any(job.status in ("queued", "running") for job in jobs),
    }


def active_models() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(status="active").order_by("name", "-created_at")
