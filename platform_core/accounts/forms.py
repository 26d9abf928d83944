from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils import timezone

from platform_core.accounts.selectors import user_by_email


class LoginForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an active account.",
        "locked": (
            "This account is locked after too many failed sign-ins. Try again in %(minutes)s minute(s) "
            "or ask your trial manager to unlock it."
        ),
    }

    def clean(self) -> dict:
        email = self.cleaned_data.get("username")
        if email:
            user = user_by_email(email)
            if user is not None and user.is_locked:
                minutes = max(1, int((user.locked_until - timezone.now()).total_seconds() // 60) + 1)
                raise ValidationError(self.error_messages["locked"], code="locked", params={"minutes": minutes})
        cleaned = super().clean()
        return cleaned


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

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("new_password1") != cleaned.get("new_password2"):
            self.add_error("new_password2", "The two new passwords do not match.")
        return cleaned
