"""Reads of models, jobs and predictions, scoped like the cases they belong to."""

from __future__ import annotations

import math
from typing import Any

from django.db.models import QuerySet

from diagnosis.calibration import fusion_calibration_for, fusion_weights_of
from diagnosis.models import InferenceJob, ModelVersion, Prediction, ResultKind
from diagnosis.networks.fusion import FUNDUS, OCT_RNFL, VISUAL_FIELD, GlaucomaEvidence, fuse_glaucoma
from diagnosis.results import deciding, model_results, percent
from platform_core.accounts.models import Role, User
from trials.models import Case, CaseFile
from trials.selectors import active_case_files, ai_blinded_trial_ids, cases_for, trial_roles, user_is_blinded_to_ai


def model_input_files(case: Case) -> QuerySet[CaseFile]:
    """The files of a case that the models read, oldest first: the ONE place that picks them. The input
    digest of a job (a changed selection queues new jobs), every photograph a fundus model reads and the
    visual field a visual-field model reads all come from here. Accepted files only: superseded ones are
    left out, and so are withdrawn ones (``trials.selectors.active_case_files``, the trial's one rule)."""
    return active_case_files(case).order_by("created_at", "pk")


def case_photographs(case: Case) -> QuerySet[CaseFile]:
    """The photographs a fundus model reads, each getting its own prediction: the gradable ones (a photograph
    measured ungradable at upload, out of focus or badly exposed, is not read; files from before the measure
    have no verdict and are read)."""
    return model_input_files(case).filter(modality=FUNDUS).exclude(gradable=False)


def ai_visible_cases(user: User) -> QuerySet[Case]:
    """Cases the user may see, less those of trials whose AI outputs are hidden from them (the blinding rule
    of ``trials.selectors.ai_blinded_trial_ids``: a reader never sees AI outputs, also when they hold another
    role, say coordinator, in the same trial)."""
    return cases_for(user).exclude(subject__trial__in=ai_blinded_trial_ids(user))


def jobs_for(user: User) -> QuerySet[InferenceJob]:
    """Current inference jobs (on the case's present files) of cases the user may see unblinded."""
    return InferenceJob.objects.filter(case__in=ai_visible_cases(user).values("pk"), is_current=True).select_related(
        "model_version"
    )


def predictions_for(user: User) -> QuerySet[Prediction]:
    """Predictions of current jobs of cases the user may see unblinded."""
    return Prediction.objects.filter(case__in=ai_visible_cases(user).values("pk"), job__is_current=True).select_related(
        "model_version", "job"
    )


MODALITY_LABELS = {FUNDUS: "fundus photograph", VISUAL_FIELD: "visual field", OCT_RNFL: "OCT RNFL thickness"}


def fused_glaucoma(
    predictions: list[Prediction], rnfl_thickness_um: float | None = None, *, trial_id: Any = None
) -> dict[str, Any] | None:
    """Per-eye glaucoma evidence from this case's model outputs and its recorded OCT RNFL thickness (see
    diagnosis/networks/fusion.py); None when the eye has none of them.

    With a fusion calibration of the trial for these model versions, `probability` is the fused posterior
    at the calibration's prior. Without one it is None: the page shows each modality's own evidence,
    marked uncalibrated, rather than one number at an arbitrary 50% prior."""
    vf = next((p for p in predictions if p.model_version.spec.glaucoma_evidence == VISUAL_FIELD), None)
    fundus = _case_fundus_glaucoma(predictions)
    if vf is None and fundus is None and rnfl_thickness_um is None:
        return None
    evidence = GlaucomaEvidence(
        fundus_probability=fundus.glaucoma_probability if fundus is not None else None,
        vf_probability=vf.glaucoma_probability if vf is not None else None,
        vf_reliable=(vf.kind == ResultKind.PREDICTION) if vf is not None else None,
        rnfl_thickness_um=rnfl_thickness_um,
    )
    calibration = (
        fusion_calibration_for(
            trial_id=trial_id,
            fundus_model_id=fundus.model_version_id if fundus is not None else None,
            vf_model_id=vf.model_version_id if vf is not None else None,
        )
        if trial_id is not None
        else None
    )
    weights = fusion_weights_of(calibration)
    result = fuse_glaucoma(evidence, weights)
    shown = {
        FUNDUS: percent(evidence.fundus_probability) if evidence.fundus_probability is not None else "",
        VISUAL_FIELD: percent(evidence.vf_probability) if evidence.vf_probability is not None else "",
        OCT_RNFL: f"{rnfl_thickness_um:.1f} µm" if rnfl_thickness_um is not None else "",
    }
    components = [
        {
            "modality": m,
            "label": MODALITY_LABELS[m],
            "value": shown[m],
            "log_odds": result.contributions[m],
            "likelihood_ratio": math.exp(result.contributions[m]),
            "calibrated": m in weights.platt,
        }
        for m in result.used
    ]
    return {
        "probability": result.probability if result.calibrated else None,
        "probability_percent": percent(result.probability)
        if result.calibrated and result.probability is not None
        else "",
        "calibrated": result.calibrated,
        "prior_probability": result.prior_probability,
        "prior_percent": percent(result.prior_probability),
        "prevalence_percent": percent(calibration.prevalence) if calibration is not None else "",
        "calibration": calibration,
        "components": components,
        "used": list(result.used),
        "used_labels": [MODALITY_LABELS[m] for m in result.used],
        "excluded": {MODALITY_LABELS[m]: why for m, why in result.excluded.items()},
    }


def _case_fundus_glaucoma(predictions: list[Prediction]) -> Prediction | None:
    """The fundus glaucoma evidence of the case: of the first such model's predictions (one per photograph),
    the one with the highest probability (``diagnosis.results.deciding``, as the page's case result)."""
    fundus = [p for p in predictions if p.model_version.spec.glaucoma_evidence == FUNDUS]
    if not fundus:
        return None
    first_model = fundus[0].model_version_id
    return deciding([p for p in fundus if p.model_version_id == first_model], "glaucoma_probability") or fundus[0]


def case_inference_context(*, user: User, case: Case) -> dict[str, Any]:
    """Inference jobs, predictions (per model: one per file read, and the case's combined result) and the
    fused glaucoma probability of a case, for its page (nothing of them for a reader of the case's trial:
    `blinded`). Engineering detail (runtime, device, job ids) is for the trial's managers only."""
    if user_is_blinded_to_ai(user, case.subject.trial):
        return {
            "blinded": True,
            "inference_jobs": [],
            "predictions": [],
            "model_results": [],
            "fused_glaucoma": None,
            "jobs_pending": False,
        }
    jobs = list(jobs_for(user).filter(case=case).order_by("model_version__name"))
    predictions = list(
        predictions_for(user)
        .filter(case=case)
        .select_related("case_file")
        .order_by("model_version__name", "model_version__version", "created_at")
    )
    results = model_results(predictions)
    return {
        "inference_jobs": jobs,
        "predictions": predictions,
        "model_results": results,
        "shows_viewer": any(f.viewable for r in results for f in r.files),
        "shows_engineering": Role.TRIAL_MANAGER in trial_roles(user, case.subject.trial),
        "fused_glaucoma": fused_glaucoma(predictions, case.oct_rnfl_thickness_um, trial_id=case.subject.trial_id),
        "jobs_pending": any(job.status in ("queued", "running") for job in jobs),
    }


def active_models() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(status="active").order_by("name", "-created_at")


# --- The model registry's pages (managers) ---------------------------------------------------------


def model_versions_of(name: str) -> QuerySet[ModelVersion]:
    """Every registered version of the model ``name``, newest first."""
    return ModelVersion.objects.filter(name=name).select_related("registered_by").order_by("-created_at")


def registry_models() -> list[dict[str, Any]]:
    """One row per model name: its newest version, how many versions it has and how many are active."""
    from django.db.models import Count, Q

    rows = (
        ModelVersion.objects.values("name")
        .annotate(versions=Count("pk"), active=Count("pk", filter=Q(status="active")))
        .order_by("name")
    )
    newest: dict[str, ModelVersion] = {}
    for version in ModelVersion.objects.order_by("name", "-created_at"):
        newest.setdefault(version.name, version)
    return [{**row, "newest": newest[row["name"]]} for row in rows]


def model_runs_for(user: User, name: str) -> list[dict[str, Any]]:
    """Where each version of the model ``name`` ran: jobs per trial and status, in the trials ``user`` manages,
    less those whose AI outputs are hidden from them (blinding). Trials they do not manage are not named."""
    from django.db.models import Count, Q

    from trials.selectors import managed_trials_for

    runs = (
        InferenceJob.objects.filter(model_version__name=name)
        .filter(case__subject__trial__in=managed_trials_for(user).values("pk"))
        .exclude(case__subject__trial__in=ai_blinded_trial_ids(user))
        .values(
            "model_version_id",
            "model_version__version",
            "case__subject__trial__slug",
            "case__subject__trial__protocol_number",
        )
        .annotate(
            jobs=Count("pk"),
            succeeded=Count("pk", filter=Q(status="succeeded")),
            failed=Count("pk", filter=Q(status="failed")),
        )
        .order_by("model_version__version", "case__subject__trial__protocol_number")
    )
    return [dict(run) for run in runs]


# Worst first: one failed job makes the case "failed"; otherwise any job still waiting; otherwise read.
_AI_STATUS_ORDER = ("failed", "running", "queued", "succeeded")


def case_ai_statuses(*, user: User, trial: Any, case_ids: list[Any]) -> dict[Any, str] | None:
    """Per case, the status of its current inference jobs (the worst of them), for the trials completeness grid;
    None for a user blinded to the trial's AI output. One query."""
    if user_is_blinded_to_ai(user, trial):
        return None
    found: dict[Any, set[str]] = {}
    for case_id, status in (
        jobs_for(user).filter(case__in=case_ids, is_current=True).values_list("case_id", "status").distinct()
    ):
        found.setdefault(case_id, set()).add(status)
    return {
        case_id: next(s for s in _AI_STATUS_ORDER if s in statuses)
        for case_id, statuses in found.items()
        if statuses & set(_AI_STATUS_ORDER)
    }
