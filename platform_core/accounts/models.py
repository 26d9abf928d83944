"""Users (email login), hospitals (trial sites) and memberships (who holds which role where)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from platform_core.models import BaseModel


class Role(models.TextChoices):
    TRIAL_MANAGER = "trial_manager", "Trial manager"
    COORDINATOR = "coordinator", "Coordinator"
    READER = "reader", "Reader"
    STATISTICIAN = "statistician", "Statistician"
    MONITOR = "monitor", "Monitor"


def normalize_email(email: str) -> str:
    """The one spelling of an address Visus stores and looks up: trimmed and lower case."""
    return (email or "").strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        """Through the audited service (``user_create``), like every other account: no unaudited way in."""
        from platform_core.accounts.services import user_create

        unknown = set(extra) - {"full_name", "is_staff", "is_superuser"}
        if unknown:
            raise TypeError(f"create_user() got unexpected fields: {sorted(unknown)}")
        return user_create(
            actor=None,
            email=email,
            full_name=str(extra.get("full_name", "")),
            password=password,
            is_staff=bool(extra.get("is_staff", False)),
            is_superuser=bool(extra.get("is_superuser", False)),
        )

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        """What ``manage.py createsuperuser`` calls: through the audited service, like every other account."""
        from platform_core.accounts.services import user_create_superuser

        return user_create_superuser(email=email, full_name=str(extra.get("full_name", "")), password=password)


TITLES = {"dr", "prof", "professor", "mr", "mrs", "ms", "miss", "mx", "sir", "dame"}


class User(AbstractBaseUser, PermissionsMixin, BaseModel):
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=200, help_text="Printed name used in e-signatures.")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May use the Django admin.")
    failed_login_count = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["full_name"]

    class Meta:
        ordering = ["email"]
        constraints = [
            # Emails are stored in lower case (see save()); this also refuses a case variant written around it.
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with this email address already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.full_name or self.email

    def clean(self) -> None:
        super().clean()
        self.email = normalize_email(self.email)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)

    def get_full_name(self) -> str:
        return self.full_name

    @property
    def blocked_addresses(self) -> int:
        """How many client addresses are blocked from signing in to this account now (``SignInFailure``)."""
        return SignInFailure.objects.filter(user=self, blocked_until__gt=timezone.now()).count()

    def get_short_name(self) -> str:
        """The first name, past a title ("Dr Rhea Reader" -> "Rhea")."""
        words = [w for w in self.full_name.split() if w.rstrip(".").lower() not in TITLES]
        return words[0] if words else (self.full_name or self.email)

    @property
    def is_locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > timezone.now()


# Part of every pseudonym at the hospital (DR01-H01-0001) and of the audit trail's scoping: no separators, one case.
hospital_code_validator = RegexValidator(
    r"^[A-Z0-9]{2,10}$", "Use 2-10 capital letters or digits, e.g. H01: the code is part of every pseudonym there."
)


class Hospital(BaseModel):
    code = models.CharField(
        max_length=10, unique=True, validators=[hospital_code_validator], help_text="Short site code, e.g. H01."
    )
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2.")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Membership(BaseModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["hospital__code", "role"]
        constraints = [
            models.UniqueConstraint(fields=["user", "hospital", "role"], name="unique_membership_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.hospital.code}"


class ApiToken(BaseModel):
    """An API token for scripts. Only a digest of the key is stored; the key is shown once, at sign-in.

    A token ends after VISUS_IDLE_TIMEOUT_MINUTES without use or VISUS_API_TOKEN_MAX_AGE_HOURS after it was
    issued, and is deleted when its user's password changes or the account is locked or deactivated.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    key_digest = models.CharField(max_length=64, unique=True, editable=False)
    last_used_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"API token of {self.user} issued {self.created_at:%Y-%m-%d %H:%M}"


class Invitation(BaseModel):
    """A one-time link, sent by e-mail, that lets a new person set a password and take a role at a hospital.

    Only a digest of the link's token is stored; the link expires (``VISUS_INVITATION_DAYS``) and works once.
    """

    email = models.EmailField()
    full_name = models.CharField(max_length=200)
    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="invitations")
    role = models.CharField(max_length=20, choices=Role.choices)
    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    invited_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation of {self.email} as {self.get_role_display()} at {self.hospital.code}"

    def clean(self) -> None:
        super().clean()
        self.email = normalize_email(self.email)

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and not self.is_expired


class SignInFailure(models.Model):
    """Failed sign-ins on one account from one client address, in the current window (shared by every process).

    A stranger who guesses at an account blocks only their own address for it: the account's owner signs in
    from theirs. The account itself locks (``User.locked_until``) only after many more failures, from any
    addresses (VISUS_ACCOUNT_LOCKOUT_THRESHOLD): a slower back-off that a distributed guesser still meets.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    address = models.CharField(max_length=64)
    count = models.PositiveIntegerField(default=0)
    window_started = models.DateTimeField()
    blocked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "address"], name="signinfailure_user_address")]

    def __str__(self) -> str:
        return f"{self.count} failed sign-in(s) on {self.user_id} from {self.address}"
