"""The download page of a trial's exports for statisticians, and the downloads (same service as the API)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from evaluation import dashboard, exports, snapshots
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


def _analyses_trial(request: HttpRequest, slug: str):
    user = signed_in_user(request)
    trial = get_object_or_404(trials_for(user), slug=slug)
    if not may_see_analyses(user, trial):
        raise PermissionDenied(
            "Only the trial's managers, statisticians and monitors (who do not read) see its analyses."
        )
    return trial


@role_required(*EXPORT_ROLES)
@require_GET
def dashboard_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The trial's analyses (evaluation.analysis) of the signed reads as they are: the stored ones when the data
    have not changed since, else computed now (a small trial) or by a task, the page showing the last ones marked
    with their time until then (evaluation.snapshots)."""
    trial = _analyses_trial(request, slug)
    shown = snapshots.dashboard(trial)
    report = shown.report
    return render(
        request,
        "evaluation/dashboard.html",
        {
            "trial": trial,
            "report": report,
            "shown": shown,
            "figures": dashboard.figures(report) if report else {},
        },
    )


@role_required(*EXPORT_ROLES)
@require_GET
def dashboard_status(request: HttpRequest, slug: str) -> JsonResponse:
    """For the dashboard's poll while a refresh runs: when the stored analyses were computed, whether a refresh is
    in flight (one row read; the page reloads when they change)."""
    trial = _analyses_trial(request, slug)
    response = JsonResponse(snapshots.status(trial))
    response["Cache-Control"] = "no-store"
    return response
