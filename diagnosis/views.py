from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from diagnosis.calibration import fusion_calibration_fit
from diagnosis.selectors import predictions_for
from platform_core.accounts.decorators import role_required
from platform_core.accounts.models import Role
from platform_core.accounts.requests import signed_in_user
from platform_core.errors import ApplicationError
from platform_core.storage import serve_private, stored_name
from trials.selectors import SUBJECT_ROLES, trial_roles, trials_for


@role_required(*SUBJECT_ROLES)
def prediction_overlay(request: HttpRequest, pk: str) -> HttpResponseBase:
    """The attention overlay of a prediction, for people who may see its case."""
    prediction = get_object_or_404(predictions_for(signed_in_user(request)), pk=pk)
    if not prediction.attention_overlay:
        raise Http404("This prediction has no attention map.")
    return serve_private(stored_name(prediction.attention_overlay), content_type="image/png")


@require_POST
@role_required(Role.TRIAL_MANAGER)
def fusion_calibrate(request: HttpRequest, slug: str) -> HttpResponse:
    """A trial manager fits the trial's glaucoma fusion on its reference standard (audited by the service)."""
    user = signed_in_user(request)
    trial = get_object_or_404(trials_for(user), slug=slug)
    if Role.TRIAL_MANAGER not in trial_roles(user, trial):
        raise PermissionDenied("Only a manager of this trial may calibrate its fusion.")
    try:
        calibration = fusion_calibration_fit(actor=user, trial=trial)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Fusion calibrated on {calibration.eyes} eyes ({calibration.positives} glaucomatous); prior "
            f"{calibration.weights['prior_probability']:.3f}.",
        )
    return redirect("trials:trial-detail", slug=trial.slug)
