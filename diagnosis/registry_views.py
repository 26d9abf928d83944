"""The model registry's pages, for trial managers: model cards, versions, where each ran; register (through
``model_register``, with its refusals), activate and retire (through ``model_set_status``)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from diagnosis.forms import ModelRegisterForm, ModelStatusForm
from diagnosis.models import ModelStatus, ModelVersion
from diagnosis.registry import model_register, model_set_status
from diagnosis.selectors import model_runs_for, model_versions_of, registry_models
from platform_core.accounts.decorators import role_required
from platform_core.accounts.models import Role
from platform_core.accounts.requests import signed_in_user
from platform_core.errors import ApplicationError
from platform_core.forms import refusal_on_form

# Card keys shown under their own headings; any other key is listed under "More from the card".
SHOWN_CARD_KEYS = {
    "intended_use",
    "training_data",
    "metrics",
    "metrics_dataset",
    "metrics_note",
    "limitations",
    "not_for_clinical_use",
    "cross_validation",
    "metrics_real_cross_validated",
}


def cross_validation_context(card: dict[str, Any]) -> dict[str, Any]:
    """Where a card's cross-validation stands (`cross_validation`: queued, running, done or failed, with its
    folds) and its pooled figures (`metrics_real_cross_validated`), shown only once measured: a card that
    says queued, running or failed shows no cross-validated figure, even a stale one."""
    state = card.get("cross_validation")
    state = state if isinstance(state, dict) else {}
    figures = card.get("metrics_real_cross_validated")
    measured = isinstance(figures, dict) and state.get("status", "done") == "done"
    return {
        "cross_validation": state,
        "cross_validated": sorted(figures.items()) if measured and isinstance(figures, dict) else [],
    }


@role_required(Role.TRIAL_MANAGER)
def model_list(request: HttpRequest) -> HttpResponse:
    return render(request, "diagnosis/model_list.html", {"models": registry_models()})


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def model_register_page(request: HttpRequest) -> HttpResponse:
    form = ModelRegisterForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            model = model_register(
                actor=signed_in_user(request),
                name=data["name"].strip(),
                version=data["version"].strip(),
                weights=data["checkpoint"].read(),
                model_card=form.model_card(),
                architecture=data["architecture"] or None,
                config=data["config"],
                metrics=data["metrics"],
                expected_sha256=data["sha256"] or "",
            )
        except (ApplicationError, ValidationError) as exc:
            refusal_on_form(form, exc)
        else:
            messages.success(request, f"{model} registered and active: it runs on newly completed cases.")
            return redirect("diagnosis:model-card", pk=model.pk)
    return render(request, "diagnosis/model_register.html", {"form": form}, status=400 if form.errors else 200)


def _card_page(
    request: HttpRequest, model: ModelVersion, *, status_form: Any = None, status: int = 200
) -> HttpResponse:
    card = model.model_card or {}
    metrics = model.metrics or card.get("metrics") or {}
    runs = model_runs_for(signed_in_user(request), model.name)
    versions = list(model_versions_of(model.name))
    for version in versions:
        version.runs = [run for run in runs if run["model_version_id"] == version.pk]  # type: ignore[attr-defined]
    context = {
        "model": model,
        "card": card,
        "metrics": sorted(metrics.items()) if isinstance(metrics, dict) else [],
        "metrics_dataset": card.get("metrics_dataset") or card.get("metrics_note") or "",
        "more": sorted((k, v) for k, v in card.items() if k not in SHOWN_CARD_KEYS),
        **cross_validation_context(card),
        "versions": versions,
        "status_form": status_form or ModelStatusForm(),
        "status_form_for": status_form and model.pk,
    }
    return render(request, "diagnosis/model_card.html", context, status=status)


@role_required(Role.TRIAL_MANAGER)
def model_card(request: HttpRequest, pk: str) -> HttpResponse:
    return _card_page(request, get_object_or_404(ModelVersion, pk=pk))


@role_required(Role.TRIAL_MANAGER)
@require_POST
def model_status(request: HttpRequest, pk: str) -> HttpResponse:
    model = get_object_or_404(ModelVersion, pk=pk)
    form = ModelStatusForm(request.POST)
    if form.is_valid():
        wanted = form.cleaned_data["status"]
        if model.status == wanted:
            form.add_error(None, f"{model} is already {ModelStatus(wanted).label.lower()}.")
        else:
            try:
                model = model_set_status(
                    actor=signed_in_user(request), model=model, status=wanted, reason=form.cleaned_data["reason"]
                )
            except (ApplicationError, ValidationError) as exc:
                refusal_on_form(form, exc)
            else:
                done = "activated: it runs on newly completed cases" if wanted == "active" else "retired"
                messages.success(request, f"{model} {done}.")
                return redirect("diagnosis:model-card", pk=model.pk)
    return _card_page(request, model, status_form=form, status=400)
