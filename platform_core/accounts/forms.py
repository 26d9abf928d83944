from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from platform_core.accounts.throttling import failed_login_note, failed_logins_exceeded, throttled_message


class LoginForm(AuthenticationForm):
    """Sign-in by email. One answer for an unknown email, a wrong password and a locked account (no enumeration)."""

    username = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an active account.",
    }

    def clean(self) -> dict:
        if self.request is not None and failed_logins_exceeded(self.request):
            raise ValidationError(throttled_message(), code="throttled")
        try:
            return super().clean()
        except ValidationError as exc:
            if self.request is not None and exc.code == "invalid_login":
                failed_login_note(self.request)
            raise


class PasswordChangeForm(forms.Form):
    old_password = forms.CharField(
        label="Current password", widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    new_password1 = forms.CharField(
        label="New password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    new_password2 = forms.CharField(
        label="New password again", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("new_password1") != cleaned.get("new_password2"):
            self.add_error("new_password2", "The two new passwords do not match.")
        return cleaned
