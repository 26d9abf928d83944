from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from platform_core import limits
from platform_core.accounts.models import Hospital
from platform_core.accounts.throttling import failed_login_note, failed_logins_exceeded, throttled_message


class LoginForm(AuthenticationForm):
    """Sign-in by email. One answer for an unknown email, a wrong password and a locked account (no enumeration)."""

    username = forms.EmailField(
        label="Email",
        max_length=limits.EMAIL,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )
    password = forms.CharField(
        label="Password",
        strip=False,
        max_length=limits.PASSWORD,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
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
        label="Current password",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        max_length=limits.PASSWORD,
    )
    new_password1 = forms.CharField(
        label="New password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        max_length=limits.PASSWORD,
    )
    new_password2 = forms.CharField(
        label="New password again",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        max_length=limits.PASSWORD,
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("new_password1") != cleaned.get("new_password2"):
            self.add_error("new_password2", "The two new passwords do not match.")
        return cleaned


# --- People (managers) ------------------------------------------------------------------------------


def _role_choices() -> list[tuple[str, str]]:
    from platform_core.accounts.models import Role

    return [("", "Choose a role"), *Role.choices]


class _ManagedHospitalForm(forms.Form):
    """A form whose hospital choices are the hospitals the signed-in manager manages."""

    def __init__(self, *args: Any, hospitals: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["hospital"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = hospitals
        if hospitals.count() == 1:
            self.fields["hospital"].initial = hospitals.first()


class InvitationForm(_ManagedHospitalForm):
    email = forms.EmailField(
        label="E-mail", max_length=limits.EMAIL, widget=forms.EmailInput(attrs={"autocomplete": "off"})
    )
    full_name = forms.CharField(label="Full name", max_length=200, help_text="As printed in their e-signatures.")
    hospital: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        queryset=Hospital.objects.none(), label="Hospital", empty_label="Choose a hospital"
    )
    role = forms.ChoiceField(choices=_role_choices, label="Role")


class ExistingAccountRoleForm(_ManagedHospitalForm):
    email = forms.EmailField(label="E-mail of the account", max_length=limits.EMAIL)
    hospital: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        queryset=Hospital.objects.none(), label="Hospital", empty_label="Choose a hospital"
    )
    role = forms.ChoiceField(choices=_role_choices, label="Role")
    reason = forms.CharField(label="Reason", max_length=500, help_text="Recorded in the audit trail.")


class RoleGrantForm(_ManagedHospitalForm):
    hospital: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        queryset=Hospital.objects.none(), label="Hospital", empty_label="Choose a hospital"
    )
    role = forms.ChoiceField(choices=_role_choices, label="Role")
    reason = forms.CharField(label="Reason", max_length=500, help_text="Recorded in the audit trail.")


class ReasonForm(forms.Form):
    reason = forms.CharField(label="Reason", max_length=500, help_text="Recorded in the audit trail.")


class InvitationAcceptForm(forms.Form):
    full_name = forms.CharField(label="Full name", max_length=200, help_text="Printed in your e-signatures.")
    password1 = forms.CharField(
        label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), max_length=limits.PASSWORD
    )
    password2 = forms.CharField(
        label="Password again",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        max_length=limits.PASSWORD,
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords do not match.")
        return cleaned
