"""API of blind reading (``/api/v1/reading/...``): one view per operation, each calling one service or
selector. Every object is looked up through ``reading.selectors``, which applies the blinding rules."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from platform_core import limits
from platform_core.accounts.models import Role, User
from platform_core.accounts.requests import signed_in_user
from platform_core.api.fields import BoundedDictField
from platform_core.api.permissions import roles_required
from platform_core.errors import ApplicationError
from reading import selectors, services, signing
from reading.models import GROUP_LENGTH, Adjudication, LesionMark, MarkKind, MarkShape, Phase, Read
from reading.workstation import VIEWER_VARIANTS, viewable
from trials.models import Case, Trial
from trials.selectors import trials_for

IsReader = roles_required(Role.READER)
IsOverseer = roles_required(Role.TRIAL_MANAGER, Role.MONITOR, Role.STATISTICIAN)
IsManager = roles_required(Role.TRIAL_MANAGER)


def reader_trial(user: User, slug: str) -> Trial:
    return get_object_or_404(selectors.reading_trials_for(user), slug=slug)


def overseen_trial(user: User, slug: str) -> Trial:
    trial = get_object_or_404(trials_for(user), slug=slug)
    if not selectors.may_oversee_reading(user, trial):
        raise PermissionDenied("Only the trial's managers, monitors and statisticians see reading progress.")
    return trial


class SignatureInputSerializer(serializers.Serializer):
    """An e-signature: the password again, and the e-mail address at the session's first signing (reading.signing:
    the session is the browser session, or the API token)."""

    username = serializers.CharField(
        required=False,
        write_only=True,
        max_length=limits.EMAIL,
        help_text="Your e-mail address: needed at the first signing of a session.",
    )
    password = serializers.CharField(trim_whitespace=False, write_only=True, max_length=limits.PASSWORD)


def signature_identity(request: Request, data: dict[str, Any]) -> str | None:
    """Take the e-mail address out of validated signing input; refuse a session's first signing without it."""
    username = data.pop("username", None)
    if username is None and signing.identity_required(request):
        raise serializers.ValidationError({"username": signing.FIRST_SIGNATURE_MESSAGE})
    return username


def own_read(user: User, pk: Any) -> Read:
    """The user's own read, for a service to act on (its marks are not fetched: ``read_response`` reads the read
    afresh for the answer)."""
    return get_object_or_404(selectors.reads_of(user).prefetch_related(None), pk=pk)


class MarkSerializer(serializers.ModelSerializer):
    case_file = serializers.UUIDField(source="case_file_id")

    class Meta:
        model = LesionMark
        fields = ["id", "case_file", "kind", "shape", "x", "y", "width", "height"]


class ReadOutputSerializer(serializers.Serializer):
    """A reader's read as the reader sees it: no pseudonym, site, visit day, other read or reference."""

    id = serializers.UUIDField()
    number = serializers.IntegerField(help_text="The reader's own case number.")
    phase = serializers.CharField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    answers = serializers.DictField()
    confidences = serializers.DictField()
    seconds_on_case = serializers.IntegerField()
    signed_at = serializers.DateTimeField(allow_null=True)
    signature_name = serializers.CharField()
    signature_meaning = serializers.CharField()
    laterality = serializers.CharField(source="case.laterality")
    oct_rnfl_thickness_um = serializers.FloatField(source="case.oct_rnfl_thickness_um", allow_null=True)
    files = serializers.SerializerMethodField()
    marks = MarkSerializer(many=True)
    ai_outputs = serializers.SerializerMethodField()

    def get_files(self, read: Read) -> list[dict[str, Any]]:
        rows = []
        for f in selectors.read_case_files(read):
            vf = getattr(f, "visual_field", None)
            rows.append(
                {
                    "id": str(f.pk),
                    "modality": f.modality,
                    "width": f.width,
                    "height": f.height,
                    "preview_url": reverse("reading:read-file", args=[read.pk, f.pk, "preview"]) if f.preview else None,
                    # A photograph at full resolution, red-free and CLAHE (the workstation's viewer); None for a VF.
                    "viewer_urls": {v: reverse("reading:read-file", args=[read.pk, f.pk, v]) for v in VIEWER_VARIANTS}
                    if viewable(f)
                    else None,
                    "visual_field": None
                    if vf is None
                    else {
                        "mean_deviation": vf.mean_deviation,
                        "pattern_standard_deviation": vf.pattern_standard_deviation,
                        "visual_field_index": vf.visual_field_index,
                        "glaucoma_hemifield_test": vf.glaucoma_hemifield_test,
                        "reliable": vf.reliable,
                        "fixation_loss_percent": vf.fixation_loss_percent,
                        "false_positive_percent": vf.false_positive_percent,
                        "false_negative_percent": vf.false_negative_percent,
                    },
                }
            )
        return rows

    def get_ai_outputs(self, read: Read) -> list[dict[str, Any]]:
        return [
            {
                "model": str(p.model_version),
                "grade": p.grade,
                "class_probabilities": p.class_probabilities,
                "referable_probability": p.referable_probability,
                "glaucoma_probability": p.glaucoma_probability,
                "overlay_url": reverse("reading:read-overlay", args=[read.pk, p.pk]) if p.attention_overlay else None,
            }
            for p in selectors.read_ai_outputs(read)
        ]


def read_response(reader: User, pk: Any, code: int = status.HTTP_200_OK) -> Response:
    """The reader's read as it is now (after the service's change), with its marks."""
    read = get_object_or_404(selectors.reads_of(reader), pk=pk)
    return Response(ReadOutputSerializer(read).data, status=code)


class ReadNextApi(APIView):
    """The reader's current case in a phase: where they stopped, else the next in their own order. 204: nothing
    left to read. 409 ``washout``: nothing to read until the washout of the AI-aided phase ends, at ``opens_at``
    (as the reading page says)."""

    permission_classes = [IsReader]

    class ReadNextInputSerializer(serializers.Serializer):
        phase = serializers.ChoiceField(choices=Phase.choices)

    @extend_schema(request=ReadNextInputSerializer, responses={200: ReadOutputSerializer, 204: None})
    def post(self, request: Request, slug: str) -> Response:
        trial = reader_trial(signed_in_user(request), slug)
        data = self.ReadNextInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        phase = data.validated_data["phase"]
        read = services.read_next(reader=signed_in_user(request), trial=trial, phase=phase)
        if read is None:
            opens = selectors.aided_phase_opens(signed_in_user(request), trial) if phase == Phase.AIDED else None
            if opens is not None:
                raise ApplicationError(
                    f"Your next AI-aided case opens on {opens:%Y-%m-%d} at {opens:%H:%M} UTC, after the washout since "
                    "you signed your unaided read of it.",
                    code="washout",
                    status=409,
                    extra={"opens_at": opens.isoformat()},
                )
            return Response(status=status.HTTP_204_NO_CONTENT)
        return read_response(signed_in_user(request), read.pk)


class ReadDetailApi(APIView):
    permission_classes = [IsReader]

    @extend_schema(responses=ReadOutputSerializer)
    def get(self, request: Request, pk: str) -> Response:
        return read_response(signed_in_user(request), pk)


class ReadDraftApi(APIView):
    """Save a draft (autosave). ``version`` is the one the form was loaded with; a stale one gets 409."""

    permission_classes = [IsReader]

    class ReadDraftInputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        answers = BoundedDictField()
        confidences = BoundedDictField(required=False, default=dict)
        seconds = serializers.IntegerField(min_value=0, required=False, default=0)

    @extend_schema(request=ReadDraftInputSerializer, responses=ReadOutputSerializer)
    def put(self, request: Request, pk: str) -> Response:
        read = own_read(signed_in_user(request), pk)
        data = self.ReadDraftInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        read = services.read_draft_save(reader=signed_in_user(request), read=read, **data.validated_data)
        return read_response(signed_in_user(request), read.pk)


class ReadSignApi(APIView):
    """Sign and lock a read: the password again and the meaning of the signature."""

    permission_classes = [IsReader]

    class ReadSignInputSerializer(SignatureInputSerializer):
        version = serializers.IntegerField(min_value=1)
        meaning = serializers.ChoiceField(choices=[(m, m) for m in services.MEANINGS["read"]])

    @extend_schema(request=ReadSignInputSerializer, responses=ReadOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        read = own_read(signed_in_user(request), pk)
        data = self.ReadSignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = signature_identity(request, data.validated_data)
        read = services.read_sign(read=read, signer=signed_in_user(request), username=username, **data.validated_data)
        signing.signed(request)
        return read_response(signed_in_user(request), read.pk)


class ReadAmendApi(APIView):
    """Amend a signed read: reason, new answers, the password again; signed anew."""

    permission_classes = [IsReader]

    class ReadAmendInputSerializer(SignatureInputSerializer):
        version = serializers.IntegerField(min_value=1)
        reason = serializers.CharField(max_length=limits.REASON)
        answers = BoundedDictField()
        confidences = BoundedDictField()
        meaning = serializers.ChoiceField(choices=[(m, m) for m in services.MEANINGS["amend"]])

    @extend_schema(request=ReadAmendInputSerializer, responses=ReadOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        read = own_read(signed_in_user(request), pk)
        data = self.ReadAmendInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = signature_identity(request, data.validated_data)
        read = services.read_amend(read=read, signer=signed_in_user(request), username=username, **data.validated_data)
        signing.signed(request)
        return read_response(signed_in_user(request), read.pk)


class MarkInputSerializer(serializers.Serializer):
    case_file = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=MarkKind.choices)
    shape = serializers.ChoiceField(choices=MarkShape.choices)
    x = serializers.FloatField(min_value=0)
    y = serializers.FloatField(min_value=0)
    width = serializers.FloatField(min_value=0, required=False, default=0.0)
    height = serializers.FloatField(min_value=0, required=False, default=0.0)


class MarkAddApi(APIView):
    permission_classes = [IsReader]

    @extend_schema(request=MarkInputSerializer, responses={201: MarkSerializer})
    def post(self, request: Request, pk: str) -> Response:
        read = own_read(signed_in_user(request), pk)
        data = MarkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        case_file = get_object_or_404(selectors.read_case_files_qs(read), pk=values.pop("case_file"))
        mark = services.mark_add(reader=signed_in_user(request), read=read, case_file=case_file, **values)
        return Response(MarkSerializer(mark).data, status=status.HTTP_201_CREATED)


class MarkChangeApi(APIView):
    permission_classes = [IsReader]

    def _mark(self, request: Request, pk: str) -> LesionMark:
        return get_object_or_404(selectors.marks_of(signed_in_user(request)), pk=pk)

    @extend_schema(request=MarkInputSerializer(partial=True), responses=MarkSerializer)
    def patch(self, request: Request, pk: str) -> Response:
        mark = self._mark(request, pk)
        data = MarkInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        if "case_file" in values:
            values["case_file"] = get_object_or_404(selectors.read_case_files_qs(mark.read), pk=values["case_file"])
        mark = services.mark_change(reader=signed_in_user(request), mark=mark, **values)
        return Response(MarkSerializer(mark).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        services.mark_delete(reader=signed_in_user(request), mark=self._mark(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProgressSerializer(serializers.Serializer):
    phase = serializers.CharField()
    signed = serializers.IntegerField()
    draft = serializers.IntegerField()
    remaining = serializers.IntegerField()


class ReaderProgressApi(APIView):
    """The reader's own progress per phase."""

    permission_classes = [IsReader]

    @extend_schema(responses=ProgressSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        trial = reader_trial(signed_in_user(request), slug)
        return Response(ProgressSerializer(selectors.reader_progress(signed_in_user(request), trial), many=True).data)


class ProgressTableSerializer(serializers.Serializer):
    reader = serializers.CharField()
    group = serializers.CharField()
    phase = serializers.CharField()
    signed = serializers.IntegerField()
    drafts = serializers.IntegerField()
    mean_seconds = serializers.IntegerField(allow_null=True)
    last_read_at = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField()
    is_active = serializers.BooleanField()


class ReadingProgressTableApi(APIView):
    """Per reader, group and phase (managers, monitors, statisticians): counts and times, never answers."""

    permission_classes = [IsOverseer]

    @extend_schema(responses=ProgressTableSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        trial = overseen_trial(signed_in_user(request), slug)
        return Response(ProgressTableSerializer(selectors.progress_table(trial), many=True).data)


class ReadingSetupApi(APIView):
    """Set the trial's reading design (managers)."""

    permission_classes = [IsManager]

    class ReadingSetupInputSerializer(serializers.Serializer):
        crossing = serializers.CharField(required=False, max_length=limits.CODE)
        readers_per_case = serializers.IntegerField(required=False)
        aided_phase = serializers.BooleanField(required=False)
        washout_days = serializers.IntegerField(required=False)
        extra_groups = serializers.ListField(
            child=serializers.CharField(max_length=GROUP_LENGTH), required=False, max_length=limits.LIST_ITEMS
        )
        grade_gap = serializers.IntegerField(required=False)
        stale_after_days = serializers.IntegerField(required=False)

    class ReadingSetupOutputSerializer(serializers.Serializer):
        crossing = serializers.CharField()
        readers_per_case = serializers.IntegerField()
        aided_phase = serializers.BooleanField()
        washout_days = serializers.IntegerField()
        extra_groups = serializers.ListField(child=serializers.CharField())
        grade_gap = serializers.IntegerField()
        stale_after_days = serializers.IntegerField()
        reference_locked_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(request=ReadingSetupInputSerializer, responses=ReadingSetupOutputSerializer)
    def post(self, request: Request, slug: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        data = self.ReadingSetupInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        setup = services.reading_setup_set(actor=signed_in_user(request), trial=trial, **data.validated_data)
        return Response(self.ReadingSetupOutputSerializer(setup).data)


class ReaderAssignApi(APIView):
    """Assign a reader to a phase with an experience group (managers)."""

    permission_classes = [IsManager]

    class ReaderAssignInputSerializer(serializers.Serializer):
        reader = serializers.EmailField(max_length=limits.EMAIL)
        phase = serializers.ChoiceField(choices=Phase.choices)
        group = serializers.CharField(max_length=GROUP_LENGTH)

    @extend_schema(
        request=ReaderAssignInputSerializer,
        responses={
            201: inline_serializer("AssignmentOut", {"id": serializers.UUIDField(), "group": serializers.CharField()})
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        data = self.ReaderAssignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reader = User.objects.filter(email__iexact=data.validated_data["reader"]).first()
        if reader is None:
            return Response(
                {
                    "error": {
                        "status": 400,
                        "code": "validation_error",
                        "message": "No user has this email address.",
                        "fields": {"reader": ["No user has this email address."]},
                    }
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        a = services.reader_assign(
            actor=signed_in_user(request),
            trial=trial,
            reader=reader,
            phase=data.validated_data["phase"],
            group=data.validated_data["group"],
        )
        return Response({"id": str(a.pk), "group": a.group}, status=status.HTTP_201_CREATED)


class ReadResetApi(APIView):
    """Discard a reader's unsigned read, with a reason (managers)."""

    permission_classes = [IsManager]

    class ReadResetInputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=limits.REASON)

    @extend_schema(request=ReadResetInputSerializer, responses={204: None})
    def post(self, request: Request, pk: str) -> Response:
        read = get_object_or_404(selectors.reads_managed_by(signed_in_user(request)), pk=pk)
        data = self.ReadResetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.read_reset(actor=signed_in_user(request), read=read, reason=data.validated_data["reason"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class PriorReadSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    group = serializers.CharField(source="assignment.group")
    answers = serializers.DictField()
    confidences = serializers.DictField()


class AdjudicationSerializer(serializers.ModelSerializer):
    prior_reads = PriorReadSerializer(source="case.prior_reads", many=True)

    class Meta:
        model = Adjudication
        fields = ["id", "status", "version", "discordance", "answers", "signed_at", "signature_name", "prior_reads"]


class AdjudicationQueueApi(APIView):
    """Discordant cases for the trial's adjudication panel, with the prior reads (unblinded by design)."""

    permission_classes = [IsReader]

    @extend_schema(responses=AdjudicationSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        trial = reader_trial(signed_in_user(request), slug)
        if not selectors.is_panel_member(signed_in_user(request), trial):
            raise PermissionDenied("Only the trial's adjudication panel sees the adjudication queue.")
        return Response(
            AdjudicationSerializer(selectors.adjudication_queue(signed_in_user(request), trial), many=True).data
        )


class AdjudicationSignApi(APIView):
    permission_classes = [IsReader]

    class AdjudicationSignInputSerializer(SignatureInputSerializer):
        version = serializers.IntegerField(min_value=1)
        answers = BoundedDictField()
        reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=limits.REASON)
        meaning = serializers.ChoiceField(choices=[(m, m) for m in services.MEANINGS["adjudicate"]])

    @extend_schema(request=AdjudicationSignInputSerializer, responses=AdjudicationSerializer)
    def post(self, request: Request, pk: str) -> Response:
        adjudication = get_object_or_404(selectors.adjudications_for(signed_in_user(request)), pk=pk)
        data = self.AdjudicationSignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = signature_identity(request, data.validated_data)
        services.adjudication_sign(
            adjudication=adjudication, signer=signed_in_user(request), username=username, **data.validated_data
        )
        signing.signed(request)
        adjudication = selectors.adjudication_queue(signed_in_user(request), adjudication.trial).get(pk=adjudication.pk)
        return Response(AdjudicationSerializer(adjudication).data)


class ReaderUnassignApi(APIView):
    """End a reader's assignment, with a reason (managers)."""

    permission_classes = [IsManager]

    class ReaderUnassignInputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=limits.REASON)

    @extend_schema(request=ReaderUnassignInputSerializer, responses={204: None})
    def post(self, request: Request, pk: str) -> Response:
        assignment = get_object_or_404(selectors.assignments_managed_by(signed_in_user(request)), pk=pk)
        data = self.ReaderUnassignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.reader_unassign(
            actor=signed_in_user(request), assignment=assignment, reason=data.validated_data["reason"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class PanelMemberAddApi(APIView):
    """Add a reader of the trial to its adjudication panel (managers)."""

    permission_classes = [IsManager]

    class PanelMemberAddInputSerializer(serializers.Serializer):
        user = serializers.EmailField(max_length=limits.EMAIL)

    @extend_schema(request=PanelMemberAddInputSerializer, responses={204: None})
    def post(self, request: Request, slug: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        data = self.PanelMemberAddInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.filter(email__iexact=data.validated_data["user"]).first()
        if user is None:
            raise serializers.ValidationError({"user": ["No user has this email address."]})
        services.panel_member_add(actor=signed_in_user(request), trial=trial, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CalibrationCaseMarkApi(APIView):
    """Mark a case of the trial as a hidden calibration case with its known answers (managers)."""

    permission_classes = [IsManager]

    class CalibrationCaseMarkInputSerializer(serializers.Serializer):
        case = serializers.UUIDField()
        known_answers = BoundedDictField()

    @extend_schema(request=CalibrationCaseMarkInputSerializer, responses={204: None})
    def post(self, request: Request, slug: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        data = self.CalibrationCaseMarkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        case = get_object_or_404(
            Case.objects.select_related("subject__trial"), pk=data.validated_data["case"], subject__trial=trial
        )
        services.calibration_case_mark(
            actor=signed_in_user(request), case=case, known_answers=data.validated_data["known_answers"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReferenceLockApi(APIView):
    """Lock the trial's reference standard, signed with the password (managers)."""

    permission_classes = [IsManager]

    class ReferenceLockInputSerializer(SignatureInputSerializer):
        meaning = serializers.ChoiceField(choices=[(m, m) for m in services.MEANINGS["lock"]])

    @extend_schema(request=ReferenceLockInputSerializer, responses={204: None})
    def post(self, request: Request, slug: str) -> Response:
        trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
        data = self.ReferenceLockInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = signature_identity(request, data.validated_data)
        services.reference_lock(actor=signed_in_user(request), trial=trial, username=username, **data.validated_data)
        signing.signed(request)
        return Response(status=status.HTTP_204_NO_CONTENT)
