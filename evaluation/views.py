"""The download page of a trial's exports for statisticians, and the downloads (same service as the API)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from evaluation import dashboard, exports
from evaluation.analysis import trial_analysis
from evaluation.apis import csv_response
from evaluation.selectors import EXPORT_ROLES, may_export, may_see_analyses
from evaluation.services import EXPORT_NAMES, trial_export
from platform_core.accounts.decorators import role_required
from platform_core.accounts.requests import signed_in_user
from trials.selectors import trials_for


@role_required(*EXPORT_ROLES)
@require_GET
def export_page(request: HttpRequest, slug: str) -> HttpResponse:
    user = signed_in_user(request)
    trial = get_object_or_404(trials_for(user), slug=slug)
    if not may_export(user, trial):
        raise PermissionDenied("Only the trial's managers, statisticians and monitors (who do not read) may export.")
    rows = [{"name": name, "description": exports.EXPORT_DESCRIPTIONS[name]} for name in EXPORT_NAMES]
    return render(
        request,
        "evaluation/exports.html",
        {
            "trial": trial,
            "rows": rows,
            "pandas_snippet": exports.pandas_snippet(f"{trial.slug}-"),
            "r_snippet": exports.r_snippet(f"{trial.slug}-"),
        },
    )


@role_required(*EXPORT_ROLES)
@require_GET
def export_download(request: HttpRequest, slug: str, name: str) -> StreamingHttpResponse:
    user = signed_in_user(request)
    trial = get_object_or_404(trials_for(user), slug=slug)
    if name not in EXPORT_NAMES:
        raise Http404("No such export.")
    chunks = trial_export(actor=user, trial=trial, name=name, channel="page")
    return csv_response(chunks, f"{trial.slug}-{name}.csv")


@role_required(*EXPORT_ROLES)
@require_GET
def dashboard_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The trial's analyses (evaluation.analysis), computed afresh on every request from the signed reads."""
    user = signed_in_user(request)
    trial = get_object_or_404(trials_for(user), slug=slug)
    if not may_see_analyses(user, trial):
        raise PermissionDenied(
            "Only the trial's managers, statisticians and monitors (who do not read) see its analyses."
        )
    report = trial_analysis(trial)
    return render(
        request,
        "evaluation/dashboard.html",
        {"trial": trial, "report": report, "figures": dashboard.figures(report)},
    )
