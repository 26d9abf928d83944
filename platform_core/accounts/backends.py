"""Email sign-in that counts failures and refuses locked accounts (21 CFR 11.300)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.hashers import make_password
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from platform_core.accounts.models import User
from platform_core.accounts.selectors import user_by_email
from platform_core.accounts.services import login_attempt_begin, login_attempt_succeeded, login_failure_record


class LockoutModelBackend(ModelBackend):
    @sensitive_variables("password")  # kept out of error reports, as in every frame this calls
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        email = username or kwargs.get("email")
        if not email or password is None:
            return None
        user = user_by_email(email)
        # The attempt is counted before the (slow) password check, so concurrent guesses cannot all be checked.
        attempt = login_attempt_begin(user=user) if user is not None else None
        if user is None or attempt is None:
            # Unknown email or locked account: the same hashing work and the same answer as a wrong password,
            # so neither the response nor its timing tells which emails exist or are locked.
            make_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            login_attempt_succeeded(user=user)
            return user
        login_failure_record(user=user, attempt=attempt)
        return None
