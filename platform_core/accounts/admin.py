from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.contrib.auth.password_validation import password_validators_help_text_html, validate_password
from django.core.exceptions import ValidationError

from platform_core.accounts.models import Hospital, Membership, User, normalize_email
from platform_core.audit.admin_mixins import AuditedAdminMixin


class UserCreationForm(forms.ModelForm):
    """New users from the admin: the same password rules as everywhere else, and one account per email."""

    password1 = forms.CharField(
        label="Password", widget=forms.PasswordInput, strip=False, help_text=password_validators_help_text_html()
    )
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput, strip=False)

    class Meta:
        model = User
        fields = ("email", "full_name")

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password1") and cleaned.get("password2") and cleaned["password1"] != cleaned["password2"]:
            self.add_error("password2", "The two passwords do not match.")
        return cleaned

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # Django's hook, absent from django-stubs; fills self.instance, which the similarity validator compares with
        password = self.cleaned_data.get("password1")
        if password:
            try:
                validate_password(password, self.instance)
            except ValidationError as error:
                self.add_error("password1", error)

    def save(self, commit: bool = True) -> User:
        user = super().save(commit=False)
        user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
        return user


class UserChangeForm(DjangoUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fk_name = "user"


@admin.register(User)
class UserAdmin(AuditedAdminMixin, DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    ordering = ("email",)
    list_display = ("email", "full_name", "is_active", "is_staff", "locked_until")
    search_fields = ("email", "full_name")
    readonly_fields = ("last_login", "failed_login_count")
    fieldsets = (
        (None, {"fields": ("email", "full_name", "password")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "locked_until", "failed_login_count")}),
        ("Dates", {"fields": ("last_login",)}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "full_name", "password1", "password2")}),)
    filter_horizontal = ()
    list_filter = ("is_active", "is_staff")
    inlines = [MembershipInline]


@admin.register(Hospital)
class HospitalAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("code", "name", "country")
    search_fields = ("code", "name")


@admin.register(Membership)
class MembershipAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("user", "hospital", "role", "is_active")
    list_filter = ("role", "hospital", "is_active")
    autocomplete_fields = ("user", "hospital")
