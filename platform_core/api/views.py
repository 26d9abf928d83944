from __future__ import annotations

from typing import NoReturn

from django.contrib.auth import authenticate
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import exceptions, generics, serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from platform_core import limits
from platform_core.accounts.models import Hospital, Membership, Role
from platform_core.accounts.requests import signed_in_user
from platform_core.accounts.selectors import hospitals_for, memberships_of
from platform_core.accounts.services import api_token_issue, login_success_record
from platform_core.accounts.throttling import (
    FailOpenScopedRateThrottle,
    failed_login_note,
    failed_logins_exceeded,
    throttled_message,
)
from platform_core.api.permissions import IsMember, roles_required
from platform_core.audit.models import AuditEvent
from platform_core.audit.selectors import audit_events_for
from platform_core.errors import ApplicationError


class TokenObtainApi(APIView):
    """Exchange email and password for a new API token (for scripts).

    Each sign-in gets its own token. A token ends after VISUS_IDLE_TIMEOUT_MINUTES unused, after
    VISUS_API_TOKEN_MAX_AGE_HOURS, and when the password changes or the account is locked or deactivated.
    An unknown email, a wrong password and a locked account get the same answer. Throttled per client address
    (scope ``auth_token``) and by the failed sign-ins from that address.
    """

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [FailOpenScopedRateThrottle]
    throttle_scope = "auth_token"

    @extend_schema_serializer(component_name="TokenObtainInput")
    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField(max_length=limits.EMAIL)
        password = serializers.CharField(
            style={"input_type": "password"}, trim_whitespace=False, max_length=limits.PASSWORD
        )

    @extend_schema_serializer(component_name="TokenObtainOutput")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    def throttled(self, request: Request, wait: float | None) -> NoReturn:
        raise exceptions.Throttled(wait, detail="Too many sign-in requests from your network address.")

    @method_decorator(sensitive_post_parameters("password"))
    def dispatch(self, request, *args, **kwargs):
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            429: OpenApiResponse(
                description="Too many sign-in requests, or failed sign-ins, from this address (``throttled``); "
                "try again later."
            ),
        },
    )
    @sensitive_variables()  # the serializer holds the password; the new token is a secret too
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if failed_logins_exceeded(request):
            raise ApplicationError(throttled_message(), code="throttled", status=429)
        user = authenticate(request, username=data.validated_data["email"], password=data.validated_data["password"])
        if user is None:
            failed_login_note(request)
            raise ApplicationError(
                "That email and password do not match an active account.", code="invalid_login", status=401
            )
        login_success_record(user=user)
        return Response(self.OutputSerializer({"token": api_token_issue(user=user)}).data)


class MembershipSerializer(serializers.ModelSerializer):
    hospital = serializers.CharField(source="hospital.code")

    class Meta:
        model = Membership
        fields = ["hospital", "role"]


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        email = serializers.EmailField()
        full_name = serializers.CharField()
        memberships = MembershipSerializer(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        user = signed_in_user(request)
        payload = {"id": user.id, "email": user.email, "full_name": user.full_name, "memberships": memberships_of(user)}
        return Response(self.OutputSerializer(payload).data)


class HospitalSerializer(serializers.ModelSerializer):
    class Meta:
        model = Hospital
        fields = ["id", "code", "name", "country"]


class HospitalListApi(generics.ListAPIView):
    """The hospitals where the caller holds a membership."""

    permission_classes = [IsMember]
    serializer_class = HospitalSerializer

    def get_queryset(self):
        return hospitals_for(signed_in_user(self.request))


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "occurred_at",
            "actor_email",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "hospital_code",
            "trial_ref",
            "changes",
            "reason",
            "hash",
        ]


class AuditEventListApi(generics.ListAPIView):
    """Audit events of the caller's hospitals (trial managers and monitors)."""

    permission_classes = [roles_required(Role.TRIAL_MANAGER, Role.MONITOR)]
    serializer_class = AuditEventSerializer

    def get_queryset(self):
        return audit_events_for(signed_in_user(self.request))
