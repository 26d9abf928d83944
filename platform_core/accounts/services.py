"""Writes about users, hospitals and memberships. Each writes its audit event."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import mail_admins
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from platform_core.accounts.models import Hospital, Membership, Role, User
from platform_core.audit.services import audit_record, diff

logger = logging.getLogger(__name__)


@transaction.atomic
def hospital_create(*, actor: User | None, code: str, name: str, country: str = "") -> Hospital:
    hospital = Hospital(code=code.strip().upper(), name=name.strip(), country=country.upper())
    hospital.full_clean()
    hospital.save()
    audit_record(
        actor=actor,
        action="hospital.create",
        obj=hospital,
        hospital_code=hospital.code,
        changes=diff(None, {"code": hospital.code, "name": hospital.name, "country": hospital.country}),
    )
    return hospital


@transaction.atomic
def user_create(
    *,
    actor: User | None,
    email: str,
    full_name: str,
    password: str | None,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "A user with this email address already exists."})
    user = User(email=email, full_name=full_name.strip(), is_staff=is_staff, is_superuser=is_superuser)
    if password is not None:
        validate_password(password, user)
    user.set_password(password)
    user.full_clean()
    user.save()
    audit_record(
        actor=actor,
        action="user.create",
        obj=user,
        changes=diff(None, {"email": user.email, "full_name": user.full_name, "is_staff": is_staff}),
    )
    return user


@transaction.atomic
def membership_grant(*, actor: User | None, user: User, hospital: Hospital, role: Role | str) -> Membership:
    membership, created = Membership.objects.get_or_create(user=user, hospital=hospital, role=str(role))
    if not created and membership.is_active:
        return membership
    if not created:
        membership.is_active = True
    membership.full_clean()
    membership.save()
    audit_record(
        actor=actor,
        action="membership.grant",
        obj=membership,
        hospital_code=hospital.code,
        changes=diff(
            {"is_active": False} if not created else None, {"user": user.email, "role": str(role), "is_active": True}
        ),
    )
    return membership


@transaction.atomic
def membership_revoke(*, actor: User, membership: Membership, reason: str) -> Membership:
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for revoking a membership."})
    if not membership.is_active:
        return membership
    membership.is_active = False
    membership.save(update_fields=["is_active", "updated_at"])
    audit_record(
        actor=actor,
        action="membership.revoke",
        obj=membership,
        hospital_code=membership.hospital.code,
        changes={"is_active": [True, False]},
        reason=reason,
    )
    return membership


@transaction.atomic
def user_password_change(*, user: User, old_password: str, new_password: str) -> User:
    if not user.check_password(old_password):
        raise ValidationError({"old_password": "Your current password was entered incorrectly."})
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from None
    user.set_password(new_password)
    user.save(update_fields=["password", "updated_at"])
    # Never the hashes: only the fact that the password changed.
    audit_record(actor=user, action="user.password_change", obj=user)
    return user


@transaction.atomic
def login_failure_record(*, user: User) -> User:
    """Count a failed sign-in; at the threshold, lock the account and alert the administrators."""
    User.objects.filter(pk=user.pk).update(failed_login_count=F("failed_login_count") + 1)
    user.refresh_from_db(fields=["failed_login_count", "locked_until"])
    audit_record(
        actor=None,
        action="login.failure",
        obj=user,
        changes={"failed_login_count": [user.failed_login_count - 1, user.failed_login_count]},
    )
    if user.failed_login_count >= settings.VISUS_LOCKOUT_THRESHOLD and not user.is_locked:
        until = timezone.now() + timedelta(minutes=settings.VISUS_LOCKOUT_MINUTES)
        user.locked_until = until
        user.save(update_fields=["locked_until", "updated_at"])
        audit_record(
            actor=None,
            action="user.lock",
            obj=user,
            changes={"locked_until": [None, until.isoformat()]},
            reason=f"{user.failed_login_count} failed sign-ins",
        )
        logger.warning("Account %s locked after %s failed sign-ins", user.pk, user.failed_login_count)
        mail_admins(
            "Visus: account locked",
            f"The account {user.pk} was locked after {user.failed_login_count} failed sign-ins.",
            fail_silently=True,
        )
    return user


@transaction.atomic
def login_success_record(*, user: User) -> User:
    if user.failed_login_count or user.locked_until:
        user.failed_login_count = 0
        user.locked_until = None
        user.save(update_fields=["failed_login_count", "locked_until", "updated_at"])
    audit_record(actor=user, action="login.success", obj=user)
    return user


@transaction.atomic
def user_unlock(*, actor: User, user: User, reason: str) -> User:
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for unlocking an account."})
    old = user.locked_until
    user.failed_login_count = 0
    user.locked_until = None
    user.save(update_fields=["failed_login_count", "locked_until", "updated_at"])
    audit_record(actor=actor, action="user.unlock", obj=user, changes={"locked_until": [old, None]}, reason=reason)
    return user
