"""Email sign-in that counts failures and refuses locked accounts (21 CFR 11.300)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.hashers import make_password
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from platform_core.accounts.models import User
from platform_core.accounts.selectors import user_by_email
from platform_core.accounts.services import (
    login_attempt_begin,
    login_attempt_succeeded,
    login_failure_record,
    sign_in_attempt_begin,
    sign_in_succeeded,
)
from platform_core.accounts.throttling import client_address


class LockoutModelBackend(ModelBackend):
    @sensitive_variables("password")  # kept out of error reports, as in every frame this calls
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        email = username or kwargs.get("email")
        if not email or password is None:
            return None
        user = user_by_email(email)
        address = client_address(request) if request is not None else ""
        # The attempt is counted before the (slow) password check, so concurrent guesses cannot all be checked:
        # first per account and address (a stranger blocks only their own address), then per account, with a
        # higher threshold (the slower back-off that also meets a guesser spread over many addresses).
        attempt = None
        if user is not None and sign_in_attempt_begin(user=user, address=address):
            attempt = login_attempt_begin(user=user, threshold=settings.VISUS_ACCOUNT_LOCKOUT_THRESHOLD)
        if user is None or attempt is None:
            # Unknown email or locked account: the same hashing work and the same answer as a wrong password,
            # so neither the response nor its timing tells which emails exist or are locked.
            make_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            login_attempt_succeeded(user=user)
            sign_in_succeeded(user=user, address=address)
            return user
        login_failure_record(user=user, attempt=attempt)
        return None
