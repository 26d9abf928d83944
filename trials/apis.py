"""REST API for trials, sites, subjects and cases. Reads via scoped selectors, writes via services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from platform_core import limits
from platform_core.accounts.models import Hospital, Role
from platform_core.accounts.requests import signed_in_user
from platform_core.api.fields import BoundedDictField
from platform_core.api.permissions import IsMember, roles_required
from platform_core.errors import ApplicationError
from trials import services
from trials.models import (
    Case,
    CaseStatus,
    DiabetesType,
    Laterality,
    Modality,
    ReadingDesign,
    ReferenceRule,
    Sex,
    SiteStatus,
    Subject,
    Trial,
    TrialSite,
    TrialStatus,
)
from trials.reading_form import CATALOGUE_CHOICES
from trials.selectors import (
    SUBJECT_ROLES,
    CasesByTrial,
    cases_for,
    coordinated_sites,
    sites_for,
    subjects_for,
    trials_for,
)


class TrialSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = ["id", *services.TRIAL_FIELDS, "status", "created_at"]


class TrialSiteSerializer(serializers.ModelSerializer):
    hospital = serializers.CharField(source="hospital.code")
    hospital_name = serializers.CharField(source="hospital.name")
    trial = serializers.CharField(source="trial.slug")

    class Meta:
        model = TrialSite
        fields = ["id", "trial", "hospital", "hospital_name", "enrolment_target", "status"]


class SubjectSerializer(serializers.ModelSerializer):
    trial = serializers.CharField(source="trial.slug")
    site = serializers.CharField(source="site.hospital.code")
    case_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Subject
        fields = [
            "id",
            "pseudonym",
            "trial",
            "site",
            "status",
            "sex",
            "age",
            "diabetes_type",
            "diabetes_duration_years",
            "consent_form_version",
            "eligibility",
            "withdrawal_reason",
            "case_count",
        ]


class CaseSerializer(serializers.ModelSerializer):
    subject = serializers.CharField(source="subject.pseudonym")
    trial = serializers.CharField(source="subject.trial.slug")
    site = serializers.CharField(source="subject.site.hospital.code")

    class Meta:
        model = Case
        fields = [
            "id",
            "subject",
            "trial",
            "site",
            "laterality",
            "visit_day",
            "status",
            "exclusion_reason",
            "oct_rnfl_thickness_um",
        ]


def _filter(qs: QuerySet, request: Request, mapping: dict[str, str]) -> QuerySet:
    for param, lookup in mapping.items():
        value = request.query_params.get(param)
        if value:
            qs = qs.filter(**{lookup: value})
    return qs


# --- Trials ----------------------------------------------------------------------------------------


@extend_schema(parameters=[OpenApiParameter("status", enum=TrialStatus.values)])
class TrialListApi(generics.ListAPIView):
    """Trials the caller takes part in."""

    permission_classes = [IsMember]
    serializer_class = TrialSerializer

    def get_queryset(self) -> QuerySet[Trial]:
        return _filter(trials_for(signed_in_user(self.request)), self.request, {"status": "status"})


class TrialDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsMember]
    serializer_class = TrialSerializer
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[Trial]:
        return trials_for(signed_in_user(self.request))


class TrialCreateApi(APIView):
    permission_classes = [roles_required(Role.TRIAL_MANAGER)]

    @extend_schema_serializer(component_name="TrialCreateInput")
    class InputSerializer(serializers.Serializer):
        slug = serializers.CharField(max_length=49)
        protocol_number = serializers.CharField(max_length=40)
        title = serializers.CharField(max_length=300)
        subject_prefix = serializers.CharField(max_length=8)
        modalities = serializers.ListField(
            child=serializers.ChoiceField(Modality.choices), allow_empty=False, max_length=len(Modality.choices)
        )
        reading_form = serializers.ListField(
            child=serializers.ChoiceField(CATALOGUE_CHOICES), allow_empty=False, max_length=len(CATALOGUE_CHOICES)
        )
        readers_per_case = serializers.IntegerField(min_value=1, max_value=50, default=3)
        reading_design = serializers.ChoiceField(ReadingDesign.choices, default=ReadingDesign.UNAIDED)
        washout_days = serializers.IntegerField(min_value=0, max_value=365, default=0)
        reference_rule = serializers.ChoiceField(ReferenceRule.choices, default=ReferenceRule.ADJUDICATION)
        inclusion_criteria = serializers.ListField(
            child=serializers.CharField(max_length=limits.CRITERION), default=list, max_length=limits.CRITERIA
        )
        exclusion_criteria = serializers.ListField(
            child=serializers.CharField(max_length=limits.CRITERION), default=list, max_length=limits.CRITERIA
        )

    @extend_schema(request=InputSerializer, responses={201: TrialSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        trial = services.trial_create(actor=signed_in_user(request), **data.validated_data)
        return Response(TrialSerializer(trial).data, status=status.HTTP_201_CREATED)


class TrialTransitionApi(APIView):
    permission_classes = [roles_required(Role.TRIAL_MANAGER)]

    @extend_schema_serializer(component_name="TrialTransitionInput")
    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(TrialStatus.choices)
        reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=limits.REASON)

    @extend_schema(request=InputSerializer, responses=TrialSerializer)
    def post(self, request: Request, slug: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        trial = services.trial_transition(actor=signed_in_user(request), trial=trial, **data.validated_data)
        return Response(TrialSerializer(trial).data)


# --- Sites -----------------------------------------------------------------------------------------


class TrialSiteListApi(generics.ListAPIView):
    permission_classes = [IsMember]
    serializer_class = TrialSiteSerializer

    def get_queryset(self) -> QuerySet[TrialSite]:
        trial = get_object_or_404(trials_for(signed_in_user(self.request)), slug=self.kwargs["slug"])
        return sites_for(user=signed_in_user(self.request), trial=trial)


class TrialSiteAddApi(APIView):
    permission_classes = [roles_required(Role.TRIAL_MANAGER)]

    @extend_schema_serializer(component_name="TrialSiteAddInput")
    class InputSerializer(serializers.Serializer):
        hospital = serializers.SlugRelatedField(slug_field="code", queryset=Hospital.objects.all())
        enrolment_target = serializers.IntegerField(min_value=0, max_value=100000)

    @extend_schema(request=InputSerializer, responses={201: TrialSiteSerializer})
    def post(self, request: Request, slug: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        site = services.trial_site_add(actor=signed_in_user(request), trial=trial, **data.validated_data)
        return Response(TrialSiteSerializer(site).data, status=status.HTTP_201_CREATED)


class TrialSiteUpdateApi(APIView):
    permission_classes = [roles_required(Role.TRIAL_MANAGER)]

    @extend_schema_serializer(component_name="TrialSiteUpdateInput")
    class InputSerializer(serializers.Serializer):
        enrolment_target = serializers.IntegerField(min_value=0, max_value=100000, required=False)
        status = serializers.ChoiceField(SiteStatus.choices, required=False)
        reason = serializers.CharField(max_length=limits.REASON)

    @extend_schema(request=InputSerializer, responses=TrialSiteSerializer)
    def post(self, request: Request, slug: str, pk: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        site = get_object_or_404(sites_for(user=signed_in_user(request), trial=trial), pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        site = services.trial_site_update(actor=signed_in_user(request), site=site, **data.validated_data)
        return Response(TrialSiteSerializer(site).data)


# --- Subjects --------------------------------------------------------------------------------------


@extend_schema(
    parameters=[
        OpenApiParameter("trial", str, description="trial slug"),
        OpenApiParameter("site", str, description="hospital code"),
        OpenApiParameter("status", enum=["enrolled", "withdrawn"]),
    ]
)
class SubjectListApi(generics.ListAPIView):
    permission_classes = [roles_required(*SUBJECT_ROLES)]
    serializer_class = SubjectSerializer

    def get_queryset(self) -> QuerySet[Subject]:
        return _filter(
            subjects_for(signed_in_user(self.request)),
            self.request,
            {"trial": "trial__slug", "site": "site__hospital__code", "status": "status"},
        )


class SubjectDetailApi(generics.RetrieveAPIView):
    permission_classes = [roles_required(*SUBJECT_ROLES)]
    serializer_class = SubjectSerializer

    def get_queryset(self) -> QuerySet[Subject]:
        return subjects_for(signed_in_user(self.request))


class SubjectEnrollApi(APIView):
    """Enrol a subject at one of the caller's sites. Send an ``Idempotency-Key`` header to make retries safe."""

    permission_classes = [roles_required(Role.COORDINATOR)]

    @extend_schema_serializer(component_name="SubjectEnrollInput")
    class InputSerializer(serializers.Serializer):
        site = serializers.CharField(help_text="hospital code of the site", max_length=limits.CODE)
        eligibility = BoundedDictField(
            child=serializers.BooleanField(), max_items=2 * limits.CRITERIA, max_key_length=limits.CRITERION
        )
        consent_date = serializers.DateField()
        consent_form_version = serializers.CharField(max_length=40)
        sex = serializers.ChoiceField(Sex.choices)
        age = serializers.IntegerField(min_value=0, max_value=130)
        diabetes_type = serializers.ChoiceField(DiabetesType.choices)
        diabetes_duration_years = serializers.IntegerField(min_value=0, max_value=100, required=False, allow_null=True)

    @extend_schema(request=InputSerializer, responses={201: SubjectSerializer})
    def post(self, request: Request, slug: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        site_code = fields.pop("site")
        site = coordinated_sites(user=signed_in_user(request), trial=trial).filter(hospital__code=site_code).first()
        if site is None:
            raise ApplicationError(
                f"{site_code} is not a site of this trial where you coordinate.", code="site_not_in_trial"
            )
        key = request.headers.get("Idempotency-Key", "").strip()[:64] or None
        subject = services.subject_enroll(actor=signed_in_user(request), site=site, submission_token=key, **fields)
        setattr(subject, "case_count", 0)  # noqa: B010 - the annotation its serializer reads; a new subject has none
        return Response(SubjectSerializer(subject).data, status=status.HTTP_201_CREATED)


class SubjectWithdrawApi(APIView):
    permission_classes = [roles_required(Role.COORDINATOR)]

    @extend_schema_serializer(component_name="SubjectWithdrawInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=limits.REASON)

    @extend_schema(request=InputSerializer, responses=SubjectSerializer)
    def post(self, request: Request, pk: str) -> Response:
        subject = get_object_or_404(subjects_for(signed_in_user(request)), pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.subject_withdraw(actor=signed_in_user(request), subject=subject, reason=data.validated_data["reason"])
        return Response(SubjectSerializer(subjects_for(signed_in_user(request)).get(pk=pk)).data)


# --- Cases -----------------------------------------------------------------------------------------


@extend_schema(
    parameters=[
        OpenApiParameter("trial", str, description="trial slug"),
        OpenApiParameter("subject", str, description="subject pseudonym"),
        OpenApiParameter("site", str, description="hospital code"),
        OpenApiParameter("status", enum=CaseStatus.values),
    ]
)
class CaseListApi(generics.ListAPIView):
    permission_classes = [roles_required(*SUBJECT_ROLES)]
    serializer_class = CaseSerializer

    def get_queryset(self) -> QuerySet[Case]:
        return _filter(
            cases_for(signed_in_user(self.request)),
            self.request,
            {
                "trial": "trial__slug",
                "subject": "subject__pseudonym",
                "site": "site__hospital__code",
                "status": "status",
            },
        )

    def paginate_queryset(self, queryset: Any) -> Any:
        # The same pages in the same order, without sorting every visible case for each page (CasesByTrial).
        return super().paginate_queryset(CasesByTrial(queryset))  # type: ignore[arg-type]  # count() and slices


class CaseDetailApi(generics.RetrieveAPIView):
    permission_classes = [roles_required(*SUBJECT_ROLES)]
    serializer_class = CaseSerializer

    def get_queryset(self) -> QuerySet[Case]:
        return cases_for(signed_in_user(self.request))


class CaseCreateApi(APIView):
    permission_classes = [roles_required(Role.COORDINATOR)]

    @extend_schema_serializer(component_name="CaseCreateInput")
    class InputSerializer(serializers.Serializer):
        laterality = serializers.ChoiceField(Laterality.choices)
        visit_day = serializers.IntegerField(min_value=0, max_value=36500)

    @extend_schema(request=InputSerializer, responses={201: CaseSerializer})
    def post(self, request: Request, pk: str) -> Response:
        subject = get_object_or_404(subjects_for(signed_in_user(request)), pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        case = services.case_create(actor=signed_in_user(request), subject=subject, **data.validated_data)
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED)


class CaseStatusApi(APIView):
    permission_classes = [roles_required(Role.COORDINATOR)]

    @extend_schema_serializer(component_name="CaseStatusInput")
    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(CaseStatus.choices)
        reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=limits.REASON)

    @extend_schema(request=InputSerializer, responses=CaseSerializer)
    def post(self, request: Request, pk: str) -> Response:
        case = get_object_or_404(cases_for(signed_in_user(request)), pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        case = services.case_set_status(actor=signed_in_user(request), case=case, **data.validated_data)
        return Response(CaseSerializer(case).data)


class CaseRnflApi(APIView):
    """Record (or, with a reason, change or clear) the OCT device's average RNFL thickness of an open case."""

    permission_classes = [roles_required(Role.COORDINATOR)]

    @extend_schema_serializer(component_name="CaseRnflInput")
    class InputSerializer(serializers.Serializer):
        thickness_um = serializers.FloatField(allow_null=True)
        reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=limits.REASON)

    @extend_schema(request=InputSerializer, responses=CaseSerializer)
    def post(self, request: Request, pk: str) -> Response:
        case = get_object_or_404(cases_for(signed_in_user(request)), pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        case = services.case_record_rnfl(actor=signed_in_user(request), case=case, **data.validated_data)
        return Response(CaseSerializer(case).data)
