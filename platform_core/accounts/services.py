"""Writes about users, hospitals and memberships. Each writes its audit event."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import mail_admins
from django.db import models, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from platform_core.accounts.models import (
    ApiToken,
    Hospital,
    Invitation,
    Membership,
    Role,
    SignInFailure,
    User,
    normalize_email,
)
from platform_core.audit.services import audit_chain_lock, audit_record, audit_snapshot, audited_save, diff, snapshot

logger = logging.getLogger(__name__)


@transaction.atomic
def hospital_create(*, actor: User | None, code: str, name: str, country: str = "") -> Hospital:
    hospital = Hospital(code=code.strip().upper(), name=name.strip(), country=country.upper())
    audited_save(hospital, actor=actor, action="hospital.create", hospital_code=hospital.code)
    return hospital


# Every local of every frame of these calls is kept out of error reports (the decorator is outermost, so
# transaction.atomic's frame, whose arguments hold the password, is covered too).
@sensitive_variables()
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
    # The password's hash is not an auditable field (accounts/auditing.py): the event never holds it.
    audited_save(user, actor=actor, action="user.create")
    return user


@transaction.atomic
def membership_grant(
    *, actor: User | None, user: User, hospital: Hospital, role: Role | str, reason: str = ""
) -> Membership:
    membership = Membership.objects.filter(user=user, hospital=hospital, role=str(role)).first()
    if membership is None:
        membership = Membership(user=user, hospital=hospital, role=str(role))
        before = None
    elif membership.is_active:
        return membership
    else:
        before = audit_snapshot(membership)
        membership.is_active = True
    audited_save(
        membership, actor=actor, action="membership.grant", before=before, hospital_code=hospital.code, reason=reason
    )
    return membership


@transaction.atomic
def membership_revoke(*, actor: User, membership: Membership, reason: str) -> Membership:
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for revoking a membership."})
    if not membership.is_active:
        return membership
    before = audit_snapshot(membership)
    membership.is_active = False
    audited_save(
        membership,
        actor=actor,
        action="membership.revoke",
        before=before,
        update_fields=["is_active", "updated_at"],
        hospital_code=membership.hospital.code,
        reason=reason,
    )
    return membership


LOCKED_MESSAGE = (
    "This account is locked after too many failed sign-ins. Try again in %(minutes)s minute(s) "
    "or ask your trial manager to unlock it."
)


def locked_minutes(user: User) -> int:
    """Whole minutes (at least 1) until a locked account opens again."""
    if user.locked_until is None:
        return 0
    return max(1, int((user.locked_until - timezone.now()).total_seconds() // 60) + 1)


@sensitive_variables()
def user_password_change(*, user: User, old_password: str, new_password: str) -> User:
    """Change a password after checking the current one, which counts like a sign-in (and can lock the account).

    Not one transaction: a wrong current password must stay counted when the change is refused.
    """
    attempt = login_attempt_begin(user=user)
    if attempt is None:
        raise ValidationError({"old_password": LOCKED_MESSAGE % {"minutes": locked_minutes(user)}})
    if not user.check_password(old_password):
        login_failure_record(user=user, attempt=attempt)
        raise ValidationError({"old_password": "Your current password was entered incorrectly."})
    login_attempt_succeeded(user=user)
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from None
    with transaction.atomic():
        before = audit_snapshot(user)
        user.set_password(new_password)
        # Saving a new password also deletes the user's API tokens (accounts.signals). The event records only
        # the fact: the password's hash is not an auditable field.
        audited_save(
            user, actor=user, action="user.password_change", before=before, update_fields=["password", "updated_at"]
        )
    return user


@dataclass(frozen=True)
class LoginAttempt:
    """A sign-in attempt counted before its password is checked."""

    count: int  # failed_login_count including this attempt
    locks: bool  # this attempt reached the threshold: the account is locked unless its password is right


def login_attempt_begin(*, user: User, threshold: int | None = None) -> LoginAttempt | None:
    """Count an attempt on ``user`` before the password is checked; None when the account is locked.

    One conditional UPDATE counts the attempt, so of any number of concurrent guesses at most
    VISUS_LOCKOUT_THRESHOLD pass this point before the lock applies: the attempt that reaches the threshold
    sets the lock itself, and :func:`login_attempt_succeeded` lifts it again if its password was right.
    After a lock expires the count stays at the threshold, so each further wrong password locks again at once.
    """
    threshold = threshold or settings.VISUS_LOCKOUT_THRESHOLD
    now = timezone.now()
    until = now + timedelta(minutes=settings.VISUS_LOCKOUT_MINUTES)
    with transaction.atomic():
        updated = (
            User.objects.filter(pk=user.pk)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
            .update(
                failed_login_count=F("failed_login_count") + 1,
                # SQL evaluates both assignments on the row as it was: this tests the count before this attempt.
                locked_until=Case(
                    When(failed_login_count__gte=threshold - 1, then=Value(until)),
                    default=Value(None),
                    output_field=models.DateTimeField(),
                ),
            )
        )
        # Read back in the same transaction, which holds the row (PostgreSQL) or the database (SQLite) locked.
        count, locked_until = User.objects.filter(pk=user.pk).values_list("failed_login_count", "locked_until").get()
    user.failed_login_count, user.locked_until = count, locked_until
    if not updated:
        return None
    return LoginAttempt(count=count, locks=locked_until is not None)


def sign_in_attempt_begin(*, user: User, address: str) -> bool:
    """Count a sign-in attempt on ``user`` from ``address`` before the password is checked; False when that
    address is blocked for this account (VISUS_LOCKOUT_THRESHOLD failures within VISUS_LOCKOUT_MINUTES).

    The row is locked while it is counted, so of concurrent guesses from one address at most the threshold reach
    the password check. A block ends after VISUS_LOCKOUT_MINUTES; a right password, or an unlock, clears it.
    """
    now = timezone.now()
    window = timedelta(minutes=settings.VISUS_LOCKOUT_MINUTES)
    address = address[:64]
    with transaction.atomic():
        SignInFailure.objects.bulk_create(
            [SignInFailure(user=user, address=address, count=0, window_started=now)], ignore_conflicts=True
        )
        row = SignInFailure.objects.select_for_update(no_key=True).get(user=user, address=address)
        if row.blocked_until is not None and row.blocked_until > now:
            return False
        if row.window_started <= now - window:  # a new window (a block that ended starts one too)
            row.count, row.window_started, row.blocked_until = 0, now, None
        row.count += 1
        if row.count >= settings.VISUS_LOCKOUT_THRESHOLD:
            row.blocked_until = now + window
            logger.warning(
                "Sign-ins to account %s from %s blocked for %s minute(s) after %s failed attempts",
                user.pk,
                address or "an unknown address",
                settings.VISUS_LOCKOUT_MINUTES,
                row.count,
            )
        row.save(update_fields=["count", "window_started", "blocked_until"])
    return True


def sign_in_succeeded(*, user: User, address: str) -> None:
    """The password was right: forget this address's failures on this account (not another address's)."""
    SignInFailure.objects.filter(user=user, address=address[:64]).delete()


def login_attempt_succeeded(*, user: User) -> User:
    """The password was right: clear the count (and the lock its attempt may have set). Audited by the caller."""
    if (
        User.objects.filter(pk=user.pk)
        .filter(Q(failed_login_count__gt=0) | Q(locked_until__isnull=False))
        .update(failed_login_count=0, locked_until=None)
    ):
        user.failed_login_count, user.locked_until = 0, None
    return user


@transaction.atomic
def login_failure_record(*, user: User, attempt: LoginAttempt) -> User:
    """Audit a failed attempt (counted by :func:`login_attempt_begin`); the one that locked alerts the admins."""
    audit_record(
        actor=None,
        action="login.failure",
        obj=user,
        changes={"failed_login_count": [attempt.count - 1, attempt.count]},
    )
    if attempt.locks:
        until = user.locked_until or timezone.now()
        audit_record(
            actor=None,
            action="user.lock",
            obj=user,
            changes={"locked_until": [None, until.isoformat()]},
            reason=f"{attempt.count} failed sign-ins",
        )
        api_tokens_revoke(user=user, reason="account locked")
        logger.warning("Account %s locked after %s failed sign-ins", user.pk, attempt.count)
        mail_admins(
            "Visus: account locked",
            f"The account {user.pk} was locked after {attempt.count} failed sign-ins.",
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
    before = audit_snapshot(user)
    user.failed_login_count = 0
    user.locked_until = None
    SignInFailure.objects.filter(user=user).delete()  # the addresses blocked for this account, too
    audited_save(
        user,
        actor=actor,
        action="user.unlock",
        before=before,
        update_fields=["failed_login_count", "locked_until", "updated_at"],
        reason=reason,
    )
    return user


# --- API tokens -----------------------------------------------------------------------------------


def api_token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_lifetimes() -> tuple[timedelta, timedelta]:
    """(idle timeout, maximum age) of API tokens: the session idle timeout, and VISUS_API_TOKEN_MAX_AGE_HOURS."""
    return (
        timedelta(minutes=settings.VISUS_IDLE_TIMEOUT_MINUTES),
        timedelta(hours=getattr(settings, "VISUS_API_TOKEN_MAX_AGE_HOURS", 12)),
    )


def api_token_is_expired(token: ApiToken, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    idle, max_age = api_token_lifetimes()
    return now - token.last_used_at > idle or now - token.created_at > max_age


@transaction.atomic
def api_token_issue(*, user: User) -> str:
    """A fresh token for each sign-in (returns the key, which is not stored); drops the user's expired ones."""
    now = timezone.now()
    idle, max_age = api_token_lifetimes()
    ApiToken.objects.filter(user=user).filter(Q(last_used_at__lt=now - idle) | Q(created_at__lt=now - max_age)).delete()
    key = secrets.token_hex(20)
    token = ApiToken(user=user, key_digest=api_token_digest(key), last_used_at=now)
    # Neither the key nor its digest is an auditable field: the event names the token's owner.
    audited_save(token, actor=user, action="api_token.issue")
    return key


# Last use is written at most this often, not on every request.
API_TOKEN_TOUCH_SECONDS = 60


def api_token_touch(*, token: ApiToken) -> None:
    now = timezone.now()
    if (now - token.last_used_at).total_seconds() >= API_TOKEN_TOUCH_SECONDS:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def api_token_expire(*, token: ApiToken) -> None:
    """Delete a token refused for age or idleness (not audited: it was never revoked by anyone)."""
    ApiToken.objects.filter(pk=token.pk).delete()


@transaction.atomic
def api_tokens_revoke(*, user: User, reason: str) -> int:
    """Delete every API token of ``user`` (password changed, account locked or deactivated)."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    if deleted:
        audit_record(
            actor=None, action="api_token.revoke", obj=user, changes={"api_tokens": [deleted, 0]}, reason=reason
        )
    return deleted


# --- Administration (the Django admin and manage.py call these; each writes its audit event) ----------
# Audit payloads name explicit fields only: never a form's data, never a password or its hash.

USER_ADMIN_FIELDS = ("full_name", "is_active", "is_staff", "is_superuser")
HOSPITAL_ADMIN_FIELDS = ("name", "country")


def _reason_required(reason: str, message: str) -> str:
    if not (reason or "").strip():
        raise ValidationError({"reason": message})
    return reason.strip()


@sensitive_variables()
@transaction.atomic
def user_create_superuser(*, email: str, full_name: str, password: str | None) -> User:
    """``manage.py createsuperuser`` (through ``User.objects.create_superuser``): an operator at the server.

    The command itself checks the password rules (and lets the operator override them), so this does not.
    """
    email = normalize_email(email)
    if not email:
        raise ValueError("An email address is required.")
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "A user with this email address already exists."})
    user = User(email=email, full_name=(full_name or "").strip(), is_staff=True, is_superuser=True)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    audit_record(
        actor=None,
        action="user.create",
        obj=user,
        changes=diff(None, snapshot(user, ("email", *USER_ADMIN_FIELDS))),
        reason="created with manage.py createsuperuser",
    )
    return user


@transaction.atomic
def user_update(*, actor: User, user: User, reason: str, groups: Iterable[Group] | None = None, **fields: Any) -> User:
    """Change an account's name, access flags or permission groups. A reason is required for any change;
    nobody removes their own access (is_active, is_staff, is_superuser) here."""
    unknown = set(fields) - set(USER_ADMIN_FIELDS)
    if unknown:
        raise ValueError(f"Unknown user fields: {sorted(unknown)}")
    user = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    audited_before = audit_snapshot(user)
    before = snapshot(user, fields.keys())
    for name, value in fields.items():
        setattr(user, name, value)
    changes = diff(before, snapshot(user, fields.keys()))
    new_groups = None
    group_change: dict[str, list[Any]] = {}
    if groups is not None:
        new_groups = list(groups)
        old_names = sorted(user.groups.values_list("name", flat=True))
        new_names = sorted(group.name for group in new_groups)
        if old_names != new_names:
            group_change["groups"] = [old_names, new_names]
    if not changes and not group_change:
        return user
    reason = _reason_required(reason, "Give a reason for changing an account.")
    if actor.pk == user.pk and {"is_active", "is_staff", "is_superuser"} & set(changes):
        raise ValidationError("You cannot change your own access; ask another administrator.")
    # Deactivating also deletes the account's API tokens (accounts.signals).
    audited_save(
        user, actor=actor, action="user.update", before=audited_before, reason=reason, extra_changes=group_change
    )
    if new_groups is not None:
        user.groups.set(new_groups)
    return user


@sensitive_variables()
@transaction.atomic
def user_password_set(*, actor: User | None, user: User, password: str, reason: str) -> User:
    """An administrator sets another person's password (a reset; ``actor`` None: an operator at the console,
    ``manage.py changepassword``). The event records that it happened and why, never the password or its hash.
    Your own password is changed on the password page, which checks the current one."""
    if actor is not None and actor.pk == user.pk:
        raise ValidationError("Change your own password on your password page; it asks for your current one.")
    reason = _reason_required(reason, "Give a reason for setting another person's password.")
    user = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    before = audit_snapshot(user)
    user.set_password(password)
    # The password is no auditable field: the event says that it was set and why. Saving also deletes the
    # user's API tokens (accounts.signals).
    audited_save(
        user,
        actor=actor,
        action="user.password_set",
        before=before,
        reason=reason,
        update_fields=["password", "updated_at"],
    )
    return user


@transaction.atomic
def hospital_update(*, actor: User, hospital: Hospital, reason: str, **fields: Any) -> Hospital:
    """Rename a hospital or correct its country. Its code is fixed: subjects' pseudonyms contain it."""
    unknown = set(fields) - set(HOSPITAL_ADMIN_FIELDS)
    if unknown:
        raise ValueError(f"Unknown hospital fields: {sorted(unknown)}")
    hospital = Hospital.objects.select_for_update(no_key=True).get(pk=hospital.pk)
    before = audit_snapshot(hospital)
    if "name" in fields:
        hospital.name = (fields["name"] or "").strip()
    if "country" in fields:
        hospital.country = (fields["country"] or "").strip().upper()
    if audit_snapshot(hospital) == before:
        return hospital
    reason = _reason_required(reason, "Give a reason for changing a hospital.")
    audited_save(
        hospital, actor=actor, action="hospital.update", before=before, hospital_code=hospital.code, reason=reason
    )
    return hospital


def _permission_names(permissions: Iterable[Permission]) -> list[str]:
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in permissions)


def _refuse_declared_group(name: str) -> None:
    from platform_core.accounts.staff_groups import declared_staff_groups

    if name in declared_staff_groups():
        message = f"{name!r} is a staff group declared by the code and re-created on every migrate; change it there."
        raise ValidationError({"name": message})


@transaction.atomic
def group_create(*, actor: User, name: str, permissions: Iterable[Permission]) -> Group:
    name = (name or "").strip()
    _refuse_declared_group(name)
    group = Group(name=name)
    group.full_clean()
    group.save()
    permissions = list(permissions)
    group.permissions.set(permissions)
    audit_record(
        actor=actor,
        action="group.create",
        obj=group,
        changes=diff(None, {"name": name, "permissions": _permission_names(permissions)}),
    )
    return group


@transaction.atomic
def group_update(
    *, actor: User, group: Group, reason: str, name: str | None = None, permissions: Iterable[Permission] | None = None
) -> Group:
    """Rename a group or change its permissions (which changes what each of its members may do)."""
    # The audit chain's lock before the group's row: an account change that puts someone in this group holds the
    # chain's lock (its event) and checks, at its commit, the membership's foreign key to the group (FOR KEY
    # SHARE). Holding the group first and then waiting for the chain's lock deadlocked with it: with FOR UPDATE
    # here, and with a rename in any case (the name is unique, a key: its update takes FOR UPDATE itself).
    audit_chain_lock()
    group = Group.objects.select_for_update(no_key=True).get(pk=group.pk)
    _refuse_declared_group(group.name)
    changes: dict[str, list[Any]] = {}
    if name is not None and name.strip() != group.name:
        _refuse_declared_group(name.strip())
        changes["name"] = [group.name, name.strip()]
        group.name = name.strip()
    new_permissions = None
    if permissions is not None:
        new_permissions = list(permissions)
        old_names = _permission_names(group.permissions.select_related("content_type"))
        new_names = _permission_names(new_permissions)
        if old_names != new_names:
            changes["permissions"] = [old_names, new_names]
    if not changes:
        return group
    reason = _reason_required(reason, "Give a reason for changing a group.")
    group.full_clean()
    group.save()
    if new_permissions is not None:
        group.permissions.set(new_permissions)
    audit_record(actor=actor, action="group.update", obj=group, changes=changes, reason=reason)
    return group


# --- People: managers invite, grant and revoke roles, unlock and deactivate, at the hospitals they manage ------
# (accounts.selectors.managed_hospitals_for). Each refusal leaves nothing written.

INVITATION_TOKEN_BYTES = 32


def _require_manages(actor: User, hospital: Hospital) -> None:
    from platform_core.accounts.selectors import managed_hospitals_for

    if not managed_hospitals_for(actor).filter(pk=hospital.pk).exists():
        raise ValidationError({"hospital": f"You do not manage the people of {hospital.code}."})


def _require_person_managed(actor: User, user: User) -> None:
    from platform_core.accounts.selectors import user_is_managed_by

    if not user_is_managed_by(actor, user):
        raise ValidationError(
            f"{user} holds no role at a hospital you manage; an administrator manages accounts of other hospitals."
        )


FELLOW_MANAGER_REFUSAL = (
    "{user} is a trial manager at {hospitals}: managers do not remove each other. An administrator revokes a trial "
    "manager's role or deactivates their account (Django admin, Memberships and Users)."
)


def _refuse_fellow_manager(actor: User, user: User, hospitals: Any) -> None:
    """A manager's role at ``hospitals`` (a queryset) is revoked by an administrator (a superuser) only."""
    if actor.is_superuser:
        return
    codes = sorted(
        Membership.objects.filter(user=user, hospital__in=hospitals, role=Role.TRIAL_MANAGER, is_active=True)
        .values_list("hospital__code", flat=True)
        .distinct()
    )
    if codes:
        raise ValidationError(FELLOW_MANAGER_REFUSAL.format(user=user, hospitals=", ".join(codes)))


def invitation_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _send_invitation(invitation: Invitation, link: str) -> None:
    """E-mail the link; to an address that has an account already (at a hospital the inviter does not manage:
    ``invitation_create`` refuses the others) say so instead, to the address's owner only, as the link cannot make a
    second account."""
    from django.core.mail import send_mail

    if User.objects.filter(email__iexact=invitation.email).exists():
        what_next = (
            "You already have a Visus account with this address, so this invitation cannot make you another one. "
            f"An administrator gives your account the role at {invitation.hospital.code}: tell "
            f"{invitation.invited_by} or your Visus administrator. Sign in with your account as before.\n\n"
        )
    else:
        what_next = (
            "Open this link to choose your password (it works once, until "
            f"{timezone.localtime(invitation.expires_at):%Y-%m-%d %H:%M %Z}):\n{link}\n\n"
        )
    send_mail(
        subject=f"Visus: you are invited as {invitation.get_role_display().lower()} at {invitation.hospital.name}",
        message=(
            f"Dear {invitation.full_name},\n\n"
            f"{invitation.invited_by} invites you to Visus as {invitation.get_role_display().lower()} at "
            f"{invitation.hospital.code} {invitation.hospital.name}.\n\n"
            f"{what_next}"
            "If you did not expect this message, ignore it.\n"
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )


@transaction.atomic
def invitation_create(
    *, actor: User, email: str, full_name: str, hospital: Hospital, role: Role | str, link_base: str
) -> Invitation:
    """Invite a new person to a role at a hospital ``actor`` manages; e-mails them a one-time link
    (``link_base`` followed by the token) once the invitation is saved. The token itself is never stored.

    The answer tells the inviter nothing about accounts and invitations outside their hospitals: an address with an
    account at another hospital (or none) is invited like a new one (its owner's e-mail says an administrator gives
    the role, and the link makes no second account), and only a waiting invitation to one of their own hospitals
    refuses another. An account of their own hospitals is refused, pointing to "Add an existing account"."""
    from django.core.validators import validate_email

    from platform_core.accounts.selectors import managed_hospitals_for, people_for

    _require_manages(actor, hospital)
    email = normalize_email(email)
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid e-mail address."}) from None
    if not (full_name or "").strip():
        raise ValidationError({"full_name": "Give the person's full name (printed in their e-signatures)."})
    if str(role) not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if people_for(actor).filter(email__iexact=email).exists():
        raise ValidationError(
            {
                "email": f"{email} already has an account at your hospitals: give them another role with "
                "“Add an existing account”."
            }
        )
    pending = Invitation.objects.select_for_update(no_key=True).filter(
        email=email,
        hospital__in=managed_hospitals_for(actor),
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    )
    if pending.exists():
        raise ValidationError({"email": f"An invitation to {email} is already waiting to be accepted."})
    token = secrets.token_urlsafe(INVITATION_TOKEN_BYTES)
    invitation = Invitation(
        email=email,
        full_name=full_name.strip(),
        hospital=hospital,
        role=str(role),
        token_digest=invitation_token_digest(token),
        expires_at=timezone.now() + timedelta(days=settings.VISUS_INVITATION_DAYS),
        invited_by=actor,
    )
    audited_save(invitation, actor=actor, action="invitation.create", hospital_code=hospital.code)
    link = f"{link_base}{token}/"
    transaction.on_commit(lambda: _send_invitation(invitation, link))
    return invitation


def invitation_by_token(token: str) -> Invitation:
    """The invitation a link names, whatever its state; an unknown token is refused (404)."""
    from platform_core.errors import ApplicationError

    invitation = (
        Invitation.objects.select_related("hospital", "invited_by")
        .filter(token_digest=invitation_token_digest(token or ""))
        .first()
    )
    if invitation is None:
        raise ApplicationError(
            "This invitation link is not valid. Check that you opened the whole link from the e-mail.",
            code="invitation_unknown",
            status=404,
        )
    return invitation


def invitation_require_usable(invitation: Invitation) -> None:
    """Refuse a used, withdrawn or expired invitation (410) with what to do instead."""
    from platform_core.errors import ApplicationError

    if invitation.accepted_at is not None:
        raise ApplicationError(
            "This invitation has already been used. Sign in with the password you chose.",
            code="invitation_used",
            status=410,
        )
    if invitation.revoked_at is not None:
        raise ApplicationError(
            "This invitation was withdrawn. Ask your trial manager for a new one.",
            code="invitation_revoked",
            status=410,
        )
    if invitation.is_expired:
        raise ApplicationError(
            f"This invitation expired on {timezone.localtime(invitation.expires_at):%Y-%m-%d %H:%M}. "
            "Ask your trial manager for a new one.",
            code="invitation_expired",
            status=410,
        )
    if User.objects.filter(email__iexact=invitation.email).exists():
        # Accepted through another link, or the account was there before (the inviter was not told: see
        # invitation_create); the role of an existing account is given by an administrator.
        raise ApplicationError(
            f"{invitation.email} already has a Visus account: sign in with it. An administrator gives it the role "
            f"at {invitation.hospital.code}; tell your trial manager or your Visus administrator.",
            code="invitation_account_exists",
            status=409,
        )
    from platform_core.accounts.selectors import managed_hospitals_for

    if not managed_hospitals_for(invitation.invited_by).filter(pk=invitation.hospital_id).exists():
        # The role is granted in the inviter's name: not once they no longer manage the people there.
        raise ApplicationError(
            f"This invitation was sent by someone who no longer manages the people of {invitation.hospital.code}. "
            "Ask your trial manager for a new one.",
            code="invitation_inviter_left",
            status=410,
        )


@sensitive_variables()
@transaction.atomic
def invitation_accept(*, token: str, full_name: str, password: str) -> User:
    """Create the invited person's account with the password they chose (checked by the password validators)
    and grant the role they were invited to. Works once: the invitation row is locked, then marked accepted."""
    invitation = invitation_by_token(token)
    invitation = (
        Invitation.objects.select_for_update(no_key=True, of=("self",))
        .select_related("hospital", "invited_by")
        .get(pk=invitation.pk)
    )
    invitation_require_usable(invitation)  # also refuses an address that has an account
    name = (full_name or "").strip() or invitation.full_name
    probe = User(email=invitation.email, full_name=name)
    try:
        validate_password(password, probe)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user = user_create(actor=None, email=invitation.email, full_name=name, password=password)
    before = audit_snapshot(invitation)
    invitation.accepted_at = timezone.now()
    invitation.user = user
    audited_save(
        invitation,
        actor=user,
        action="invitation.accept",
        before=before,
        update_fields=["accepted_at", "user", "updated_at"],
        hospital_code=invitation.hospital.code,
    )
    membership_grant(
        actor=invitation.invited_by,
        user=user,
        hospital=invitation.hospital,
        role=invitation.role,
        reason=f"invitation accepted by {invitation.email}",
    )
    return user


@transaction.atomic
def invitation_revoke(*, actor: User, invitation: Invitation, reason: str) -> Invitation:
    """Withdraw an invitation that has not been used (a mistyped address, a change of plan)."""
    invitation = (
        Invitation.objects.select_for_update(no_key=True, of=("self",)).select_related("hospital").get(pk=invitation.pk)
    )
    _require_manages(actor, invitation.hospital)
    reason = _reason_required(reason, "Give a reason for withdrawing an invitation.")
    if invitation.accepted_at is not None:
        raise ValidationError("This invitation has already been accepted; revoke the person's role instead.")
    if invitation.revoked_at is not None:
        raise ValidationError("This invitation was already withdrawn.")
    before = audit_snapshot(invitation)
    invitation.revoked_at = timezone.now()
    audited_save(
        invitation,
        actor=actor,
        action="invitation.revoke",
        before=before,
        update_fields=["revoked_at", "updated_at"],
        hospital_code=invitation.hospital.code,
        reason=reason,
    )
    return invitation


@transaction.atomic
def person_role_grant(*, actor: User, user: User, hospital: Hospital, role: Role | str, reason: str) -> Membership:
    """Give an existing account a role at a hospital ``actor`` manages, with a reason. The account must hold, or
    have held, a role at a hospital ``actor`` manages: an account of another hospital gets its first role here from
    an administrator (the admin's Memberships page), not from a manager who happens to know its address."""
    _require_manages(actor, hospital)
    _require_person_managed(actor, user)
    reason = _reason_required(reason, "Give a reason for granting a role.")
    if user.pk == actor.pk:
        raise ValidationError(
            "You cannot grant yourself a role; ask another trial manager (a manager who also reads would be unblinded)."
        )
    if str(role) not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if not user.is_active:
        raise ValidationError(f"{user} is deactivated; an administrator must reactivate the account first.")
    if Membership.objects.filter(user=user, hospital=hospital, role=str(role), is_active=True).exists():
        raise ValidationError(f"{user} already holds {Role(str(role)).label} at {hospital.code}.")
    return membership_grant(actor=actor, user=user, hospital=hospital, role=role, reason=reason)


@transaction.atomic
def person_role_revoke(*, actor: User, membership: Membership, reason: str) -> Membership:
    """Revoke a role at a hospital ``actor`` manages, with a reason. Nobody revokes their own role here, and a
    fellow manager's trial manager role only an administrator revokes (one manager cannot lock out the others)."""
    membership = (
        Membership.objects.select_for_update(no_key=True, of=("self",))
        .select_related("hospital", "user")
        .get(pk=membership.pk)
    )
    _require_manages(actor, membership.hospital)
    reason = _reason_required(reason, "Give a reason for revoking a role.")
    if membership.user_id == actor.pk:
        raise ValidationError("You cannot revoke your own role; ask another trial manager.")
    if not membership.is_active:
        raise ValidationError(f"{membership} was already revoked.")
    if membership.role == Role.TRIAL_MANAGER:
        _refuse_fellow_manager(actor, membership.user, Hospital.objects.filter(pk=membership.hospital_id))
    return membership_revoke(actor=actor, membership=membership, reason=reason)


@transaction.atomic
def person_unlock(*, actor: User, user: User, reason: str) -> User:
    """Unlock an account locked after failed sign-ins (the sign-in page's "your trial manager can unlock
    sooner"), for a person ``actor`` manages, through ``user_unlock``."""
    user = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    _require_person_managed(actor, user)
    reason = _reason_required(reason, "Give a reason for unlocking an account.")
    if not user.is_locked and not user.failed_login_count:
        raise ValidationError(f"{user}'s account is not locked.")
    return user_unlock(actor=actor, user=user, reason=reason)


@transaction.atomic
def person_deactivate(*, actor: User, user: User, reason: str) -> User:
    """Switch off the account of a person ``actor`` manages (sign-in, sessions and API tokens end), through
    ``user_update``. Refused for oneself, for administrators, for a fellow trial manager (an administrator does
    that), and for a person who also holds roles at hospitals ``actor`` does not manage (their role here is revoked
    instead)."""
    from platform_core.accounts.selectors import managed_hospitals_for, memberships_elsewhere

    user = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    _require_person_managed(actor, user)
    reason = _reason_required(reason, "Give a reason for deactivating an account.")
    if user.pk == actor.pk:
        raise ValidationError("You cannot deactivate your own account; ask another trial manager.")
    if not user.is_active:
        raise ValidationError(f"{user}'s account is already deactivated.")
    if user.is_staff or user.is_superuser:
        raise ValidationError(f"{user} is an administrator; only another administrator can deactivate them.")
    _refuse_fellow_manager(actor, user, managed_hospitals_for(actor))
    if memberships_elsewhere(actor, user).exists():
        raise ValidationError(
            f"{user} also holds roles at hospitals you do not manage: revoke their roles at yours instead."
        )
    return user_update(actor=actor, user=user, reason=reason, is_active=False)
