"""Reads about users and their hospitals. Every selector that lists site data scopes it here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.db.models import Count, Exists, IntegerField, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from platform_core.accounts.models import Hospital, Invitation, Membership, Role, SignInFailure, User

M = TypeVar("M", bound=Model)


def _role_values(roles: Iterable[Role | str] | None) -> list[str] | None:
    return None if roles is None else [str(r) for r in roles]


def memberships_of(user: User) -> QuerySet[Membership]:
    if not getattr(user, "is_authenticated", False):
        return Membership.objects.none()
    return Membership.objects.filter(user=user, is_active=True).select_related("hospital")


def roles_of(user: User) -> set[str]:
    return set(memberships_of(user).values_list("role", flat=True))


def user_has_role(user: User, *roles: Role | str, hospital: Hospital | None = None) -> bool:
    qs = memberships_of(user).filter(role__in=[str(r) for r in roles])
    if hospital is not None:
        qs = qs.filter(hospital=hospital)
    return qs.exists()


def hospital_ids_for(user: User, roles: Iterable[Role | str] | None = None) -> QuerySet[Membership, Any]:
    """The ids of the hospitals where ``user`` holds an active membership (in one of ``roles``)."""
    qs = memberships_of(user)
    wanted = _role_values(roles)
    if wanted is not None:
        qs = qs.filter(role__in=wanted)
    return qs.values("hospital_id")


def scope_to_memberships(
    queryset: QuerySet[M],
    *,
    user: User,
    hospital_path: str = "hospital",
    roles: Iterable[Role | str] | None = None,
) -> QuerySet[M]:
    """Keep only rows whose hospital (reached through ``hospital_path``) is one of the user's.

    Superusers get no bypass: site isolation and blinding apply to administrators too.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return queryset.none()
    return queryset.filter(**{f"{hospital_path}__in": hospital_ids_for(user, roles)})


def hospitals_for(user: User, roles: Iterable[Role | str] | None = None) -> QuerySet[Hospital]:
    return scope_to_memberships(Hospital.objects.all(), user=user, hospital_path="id", roles=roles)


def user_by_email(email: str) -> User | None:
    return User.objects.filter(email__iexact=email.strip()).first()


# --- People: who manages whom -----------------------------------------------------------------------
# A trial manager manages the people of the hospitals where they hold that role themselves. Not those of every
# site of their trials: roles are held per hospital, so a role granted at another trial's site would reach into
# every trial at that hospital.


def managed_hospitals_for(user: User) -> QuerySet[Hospital]:
    """The hospitals whose people ``user`` manages (invites, grants and revokes roles, unlocks, deactivates)."""
    return hospitals_for(user, [Role.TRIAL_MANAGER]).order_by("code")


def people_for(manager: User) -> QuerySet[User]:
    """Everyone holding (or having held) a role at a hospital ``manager`` manages, with their lock state."""
    hospitals = managed_hospitals_for(manager)
    held = Membership.objects.filter(user=OuterRef("pk"), hospital__in=hospitals)
    return User.objects.filter(Exists(held)).order_by("full_name", "email")


def people_with_sign_in_state(manager: User) -> QuerySet[User]:
    """``people_for``, each with ``blocked_address_count``: how many client addresses are blocked from signing in to
    the account now (``SignInFailure``; the person page's ``User.blocked_addresses``), in the same query."""
    blocked = (
        SignInFailure.objects.filter(user=OuterRef("pk"), blocked_until__gt=timezone.now())
        .values("user")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return people_for(manager).annotate(
        blocked_address_count=Coalesce(Subquery(blocked, output_field=IntegerField()), 0)
    )


def memberships_managed_by(manager: User, user: User | None = None) -> QuerySet[Membership]:
    """The memberships at hospitals ``manager`` manages (of ``user`` only, when given)."""
    qs = Membership.objects.filter(hospital__in=managed_hospitals_for(manager)).select_related("hospital", "user")
    if user is not None:
        qs = qs.filter(user=user)
    return qs.order_by("hospital__code", "role")


def memberships_elsewhere(manager: User, user: User) -> QuerySet[Membership]:
    """``user``'s active memberships at hospitals ``manager`` does not manage (their sites are not shown)."""
    return Membership.objects.filter(user=user, is_active=True).exclude(hospital__in=managed_hospitals_for(manager))


def user_is_managed_by(manager: User, user: User) -> bool:
    return people_for(manager).filter(pk=user.pk).exists()


def invitations_for(manager: User) -> QuerySet[Invitation]:
    """Invitations to the hospitals ``manager`` manages, newest first."""
    return Invitation.objects.filter(hospital__in=managed_hospitals_for(manager)).select_related(
        "hospital", "invited_by"
    )
