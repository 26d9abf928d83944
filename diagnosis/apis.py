from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from rest_framework import generics, serializers
from rest_framework.exceptions import PermissionDenied

from diagnosis.models import InferenceJob, ModelVersion, Prediction
from diagnosis.selectors import jobs_for, predictions_for
from platform_core.accounts.models import Role, User
from platform_core.accounts.requests import signed_in_user
from platform_core.api.permissions import IsMember, roles_required
from trials.models import Case
from trials.selectors import SUBJECT_ROLES, cases_for, trial_roles, user_is_blinded_to_ai


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "architecture",
            "task",
            "config",
            "input_spec",
            "sha256",
            "size",
            "model_card",
            "metrics",
            "status",
            "created_at",
        ]


class InferenceJobSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.__str__")
    case = serializers.UUIDField(source="case_id")

    class Meta:
        model = InferenceJob
        fields = ["id", "case", "model", "status", "progress", "error", "attempts", "started_at", "finished_at"]


class PredictionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.__str__")
    case = serializers.UUIDField(source="case_id")
    case_file = serializers.UUIDField(source="case_file_id", allow_null=True, help_text="The file it read.")
    attention_overlay_url = serializers.SerializerMethodField()
    runtime_ms = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Engineering detail: the trial's managers only (null for others)."
    )
    details = serializers.JSONField(
        read_only=True, allow_null=True, help_text="Engineering detail: the trial's managers only (null for others)."
    )

    class Meta:
        model = Prediction
        fields = [
            "id",
            "case",
            "model",
            "case_file",
            "kind",
            "class_probabilities",
            "grade",
            "referable_probability",
            "glaucoma_probability",
            "crop_boxes",
            "runtime_ms",
            "details",
            "attention_overlay_url",
            "created_at",
        ]

    def to_representation(self, instance: Prediction) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not self.context.get("shows_engineering", False):  # as on the case page: runtime and device for managers
            data["runtime_ms"] = None
            data["details"] = None
        return data

    def get_attention_overlay_url(self, obj: Prediction) -> str | None:
        return reverse("diagnosis:prediction-overlay", args=[obj.pk]) if obj.attention_overlay else None


class ModelVersionListApi(generics.ListAPIView):
    """The registry (model cards included)."""

    permission_classes = [IsMember]
    serializer_class = ModelVersionSerializer
    queryset = ModelVersion.objects.order_by("name", "-created_at")


def unblinded_case(user: User, pk: str) -> Case:
    """The case (404 if the user may not see it); 403 if the user reads cases of its trial (blind reading)."""
    case = get_object_or_404(cases_for(user), pk=pk)
    if user_is_blinded_to_ai(user, case.subject.trial):
        raise PermissionDenied("You read cases of this trial: its AI outputs stay hidden from you (blind reading).")
    return case


class CaseInferenceJobListApi(generics.ListAPIView):
    permission_classes = [roles_required(*SUBJECT_ROLES)]
    serializer_class = InferenceJobSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[InferenceJob]:
        case = unblinded_case(signed_in_user(self.request), self.kwargs["pk"])
        return jobs_for(signed_in_user(self.request)).filter(case=case).order_by("model_version__name")


class CasePredictionListApi(generics.ListAPIView):
    permission_classes = [roles_required(*SUBJECT_ROLES)]
    serializer_class = PredictionSerializer

    def get_queryset(self) -> QuerySet[Prediction]:
        case = unblinded_case(signed_in_user(self.request), self.kwargs["pk"])
        return predictions_for(signed_in_user(self.request)).filter(case=case).order_by("model_version__name")

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        case = unblinded_case(signed_in_user(self.request), self.kwargs["pk"])
        context["shows_engineering"] = Role.TRIAL_MANAGER in trial_roles(
            signed_in_user(self.request), case.subject.trial
        )
        return context
