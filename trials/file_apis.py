"""API for case files: upload (multipart) and list. Same service as the page and import_cases."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from platform_core.accounts.models import Role
from platform_core.accounts.requests import signed_in_user
from platform_core.api.permissions import roles_required
from platform_core.errors import ApplicationError
from trials.file_services import case_file_upload
from trials.models import CaseFile, VisualFieldResult
from trials.selectors import SUBJECT_ROLES, case_files_for, cases_for
from trials.uploads.errors import UploadRejected


class VisualFieldSerializer(serializers.ModelSerializer):
    class Meta:
        model = VisualFieldResult
        fields = [
            "eye",
            "mean_deviation",
            "pattern_standard_deviation",
            "visual_field_index",
            "glaucoma_hemifield_test",
            "indices_source",
            "fixation_loss_percent",
            "false_positive_percent",
            "false_negative_percent",
            "reliable",
            "reliability_rule",
            "reliability_reasons",
            "reliability_criteria",
            "sensitivities",
            "total_deviation",
            "pattern_deviation",
            "total_deviation_probability",
            "pattern_deviation_probability",
        ]


class CaseFileSerializer(serializers.ModelSerializer):
    case = serializers.UUIDField(source="case_id")
    content_url = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    visual_field = serializers.SerializerMethodField()

    class Meta:
        model = CaseFile
        fields = [
            "id",
            "case",
            "modality",
            "file_format",
            "sop_class",
            "content_type",
            "sha256",
            "size",
            "width",
            "height",
            "frames",
            "bits",
            "deid_report",
            "status",
            "status_reason",
            "superseded_by",
            "fundus_check",
            "gate_exception_reason",
            "gradable",
            "quality",
            "created_at",
            "content_url",
            "preview_url",
            "thumbnail_url",
            "visual_field",
        ]

    def _url(self, obj: CaseFile, variant: str) -> str | None:
        if variant != "content" and not getattr(obj, variant):
            return None
        return reverse("trials:case-file", args=[obj.pk, variant])

    def get_content_url(self, obj: CaseFile) -> str | None:
        return self._url(obj, "content")

    def get_preview_url(self, obj: CaseFile) -> str | None:
        return self._url(obj, "preview")

    def get_thumbnail_url(self, obj: CaseFile) -> str | None:
        return self._url(obj, "thumbnail")

    @extend_schema(responses=VisualFieldSerializer)
    def get_visual_field(self, obj: CaseFile) -> dict | None:
        result = getattr(obj, "visual_field", None)
        return VisualFieldSerializer(result).data if result is not None else None


class CaseFileListApi(generics.ListAPIView):
    permission_classes = [roles_required(*SUBJECT_ROLES)]
    serializer_class = CaseFileSerializer

    def get_queryset(self) -> QuerySet[CaseFile]:
        case = get_object_or_404(cases_for(signed_in_user(self.request)), pk=self.kwargs["pk"])
        return case_files_for(signed_in_user(self.request)).filter(case=case)


class CaseFileUploadOutputSerializer(CaseFileSerializer):
    outcome = serializers.ChoiceField(
        choices=["accepted", "duplicate"], help_text="accepted (201): stored; duplicate (200): the case has this file"
    )

    class Meta(CaseFileSerializer.Meta):
        fields = ["outcome", *CaseFileSerializer.Meta.fields]


class CaseFileUploadApi(APIView):
    """Upload one file (multipart field ``file``) to a case. 201 accepted, 200 duplicate, 400 refused."""

    permission_classes = [roles_required(Role.COORDINATOR)]
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "fundus_exception_reason": {
                        "type": "string",
                        "description": "Why a photograph refused as not_fundus is one: it is then stored anyway.",
                    },
                },
            }
        },
        responses={
            201: CaseFileUploadOutputSerializer,
            200: CaseFileUploadOutputSerializer,
            413: OpenApiResponse(description="The file is larger than the upload limit (``too_large``)."),
            503: OpenApiResponse(
                description="The file store is unavailable (``storage_unavailable``): nothing was stored; try again."
            ),
        },
    )
    def post(self, request: Request, pk: str) -> Response:
        case = get_object_or_404(cases_for(signed_in_user(request)), pk=pk)
        limit = settings.VISUS_MAX_UPLOAD_MB * 1024 * 1024
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit + 64 * 1024:
            raise ApplicationError(
                f"The file is larger than the upload limit of {settings.VISUS_MAX_UPLOAD_MB} MB.",
                code="too_large",
                status=413,
            )
        uploaded = request.FILES.get("file")
        if uploaded is None:
            raise ApplicationError("Send the file in the multipart field 'file'.", code="no_file")
        try:
            outcome = case_file_upload(
                actor=signed_in_user(request),
                case=case,
                data=uploaded.file,  # in memory when small, else spooled to disk: never read whole here
                source="api",
                fundus_exception_reason=str(request.POST.get("fundus_exception_reason") or ""),
            )
        except UploadRejected as exc:
            raise ApplicationError(exc.message, code=exc.code) from None
        body = {"outcome": outcome.outcome, **CaseFileSerializer(outcome.case_file).data}
        return Response(body, status=status.HTTP_201_CREATED if outcome.outcome == "accepted" else status.HTTP_200_OK)
