"""Registry admin: upload a checkpoint (through the same checks as register_model), retire or activate."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from diagnosis.models import Architecture, FusionCalibration, InferenceJob, ModelStatus, ModelVersion, Prediction
from diagnosis.registry import model_register, model_set_status
from platform_core import limits
from platform_core.audit.admin_mixins import ReadOnlyAdmin, ScopedAdminMixin, ServiceAdminMixin, reasoned_action
from trials.selectors import ai_blinded_trial_ids, cases_for, trials_for


class ModelRegisterForm(forms.ModelForm):
    checkpoint = forms.FileField(help_text="torch.save file: a Visus checkpoint or a plain state dict.")
    architecture_choice = forms.ChoiceField(
        choices=[("", "from the checkpoint"), *Architecture.choices], required=False, label="Architecture"
    )
    config_json = forms.CharField(
        widget=forms.Textarea, required=False, max_length=limits.DOCUMENT, label="Config (JSON, plain state dicts)"
    )
    sha256 = forms.CharField(
        required=False,
        max_length=limits.CODE,
        label="Expected SHA-256",
        help_text="As published with the weights; refused if it differs.",
    )
    model_card_json = forms.CharField(
        widget=forms.Textarea,
        max_length=limits.DOCUMENT,
        label="Model card (JSON)",
        initial=json.dumps(
            {"intended_use": "", "training_data": "", "metrics": {}, "limitations": "", "not_for_clinical_use": True},
            indent=2,
        ),
    )

    class Meta:
        model = ModelVersion
        fields = ["name", "version"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for field in ("config_json", "model_card_json"):
            text = cleaned.get(field) or ""
            try:
                cleaned[field] = json.loads(text) if text.strip() else None
            except json.JSONDecodeError as exc:
                self.add_error(field, f"Not valid JSON: {exc}")
            except RecursionError:
                self.add_error(field, "Not valid JSON: it is nested too deeply.")
            else:
                problem = limits.json_problem(cleaned[field])
                if problem:
                    self.add_error(field, problem)
        return cleaned


def _retire(actor, model: ModelVersion, reason: str) -> None:
    model_set_status(actor=actor, model=model, status=ModelStatus.RETIRED, reason=reason)


def _activate(actor, model: ModelVersion, reason: str) -> None:
    model_set_status(actor=actor, model=model, status=ModelStatus.ACTIVE, reason=reason)


@admin.register(ModelVersion)
class ModelVersionAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Registered through ``model_register`` (the checks of ``register_model``); never edited; retired or
    activated, with a reason, by the actions on the list."""

    list_display = ("name", "version", "architecture", "task", "status", "sha256_short", "created_at")
    list_filter = ("status", "architecture", "task")
    actions = [
        reasoned_action(description="Retire the selected models", service=_retire, permission="set_status"),
        reasoned_action(description="Activate the selected models", service=_activate, permission="set_status"),
    ]
    readonly_fields = (
        "architecture",
        "task",
        "config",
        "input_spec",
        "weights",
        "sha256",
        "size",
        "model_card",
        "metrics",
        "status",
        "registered_by",
    )

    @admin.display(description="SHA-256")
    def sha256_short(self, obj: ModelVersion) -> str:
        return obj.sha256[:12]

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Any]]:
        if obj is None:
            kwargs["form"] = ModelRegisterForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "version", "checkpoint", "sha256", "architecture_choice", "config_json", "model_card_json"]
        return ["name", "version", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "name", "version") if obj else ()

    def has_set_status_permission(self, request) -> bool:
        return request.user.has_perm("diagnosis.change_modelversion")

    def create_through_service(self, request, form) -> ModelVersion:
        data = form.cleaned_data
        return model_register(
            actor=request.user,
            name=data["name"],
            version=data["version"],
            weights=data["checkpoint"].read(),
            model_card=data["model_card_json"] or {},
            architecture=data["architecture_choice"] or None,
            config=data["config_json"],
            expected_sha256=data.get("sha256") or "",
        )


@admin.register(InferenceJob)
class InferenceJobAdmin(ScopedAdminMixin, ReadOnlyAdmin):
    """Jobs and predictions of the cases the staff member may see, never of trials they read (blinding)."""

    list_display: tuple[str, ...] = (
        "case",
        "model_version",
        "status",
        "progress",
        "attempts",
        "is_current",
        "finished_at",
    )
    list_filter: ClassVar[tuple[str, ...]] = ("status", "model_version", "is_current")

    def scope(self, request, queryset):
        return queryset.filter(case__in=cases_for(request.user).values("pk"))

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(case__subject__trial__in=ai_blinded_trial_ids(request.user))


@admin.register(Prediction)
class PredictionAdmin(InferenceJobAdmin):
    list_display = (
        "case",
        "case_file",
        "model_version",
        "kind",
        "grade",
        "referable_probability",
        "glaucoma_probability",
    )
    list_filter = ("kind", "model_version")
    exclude = ("attention_overlay",)  # a private file: shown through the authorised view below, never its path
    readonly_fields = ("overlay",)

    @admin.display(description="Overlay")
    def overlay(self, obj: Prediction) -> str:
        from django.urls import reverse
        from django.utils.html import format_html

        if not obj.attention_overlay:
            return "-"
        return format_html('<a href="{}">open</a>', reverse("diagnosis:prediction-overlay", args=[obj.pk]))


@admin.register(FusionCalibration)
class FusionCalibrationAdmin(ScopedAdminMixin, ReadOnlyAdmin):
    """Fitted fusion weights of the staff member's trials (written only by ``fusion_calibration_fit``, which
    audits them), never of trials they read: the weights are fitted on AI outputs (blinding)."""

    list_display = ("trial", "fundus_model", "vf_model", "eyes", "positives", "fitted_by", "created_at")
    list_filter: ClassVar[tuple[Any, ...]] = (("trial", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("trial", "fundus_model", "vf_model", "fitted_by")

    def scope(self, request, queryset):
        return queryset.filter(trial__in=trials_for(request.user).values("pk"))

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(trial__in=ai_blinded_trial_ids(request.user))
