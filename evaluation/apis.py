"""API of the exports for statisticians: ``/api/v1/evaluation/trials/SLUG/exports/NAME.csv``, one endpoint per
export, each a streamed CSV through ``evaluation.services.trial_export`` (audited)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.views import APIView

from evaluation import exports
from evaluation.selectors import EXPORT_ROLES
from evaluation.services import EXPORT_NAMES, trial_export
from platform_core.accounts.requests import signed_in_user
from platform_core.api.permissions import roles_required
from trials.selectors import trials_for

MayExport = roles_required(*EXPORT_ROLES)


def csv_response(chunks, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class TrialExportApi(APIView):
    permission_classes = [MayExport]
    export_name = ""

    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        user = signed_in_user(request)
        trial = get_object_or_404(trials_for(user), slug=slug)
        try:
            chunks = trial_export(actor=user, trial=trial, name=self.export_name, channel="api")
        except DjangoPermissionDenied as error:
            raise PermissionDenied(str(error)) from None
        return csv_response(chunks, f"{trial.slug}-{self.export_name}.csv")


def export_api(name: str) -> type[TrialExportApi]:
    """One view class per export, so that the schema documents each as its own operation."""
    doc = extend_schema(
        operation_id=f"trial_export_{name}",
        summary=f"Export {name}: {exports.EXPORT_DESCRIPTIONS[name]}",
        description=(
            "A streamed CSV (UTF-8, header row). Labels and pseudonyms only, days since enrolment instead of "
            "dates; every column is described in the dictionary export. Trial managers, statisticians and "
            "monitors of the trial who do not read in it; audited as trial.export."
        ),
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="the CSV")},
    )

    @doc
    def get(self: TrialExportApi, request: Request, slug: str) -> StreamingHttpResponse:
        return TrialExportApi.get(self, request, slug)

    return type(f"TrialExport_{name}_Api", (TrialExportApi,), {"export_name": name, "get": get})


EXPORT_APIS = {name: export_api(name) for name in EXPORT_NAMES}
