"""Email sign-in that counts failures and refuses locked accounts (21 CFR 11.300)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from platform_core.accounts.models import User
from platform_core.accounts.selectors import user_by_email
from platform_core.accounts.services import login_failure_record


class LockoutModelBackend(ModelBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        email = username or kwargs.get("email")
        if not email or password is None:
            return None
        user = user_by_email(email)
        if user is None:
            # Same work as a real check, so response time does not reveal which emails exist.
            User().set_password(password)
            return None
        if user.is_locked:
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        login_failure_record(user=user)
        return None
