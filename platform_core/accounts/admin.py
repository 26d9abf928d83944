"""Accounts, hospitals, memberships and permission groups in the admin: every write calls an audited service.

Only superusers administer accounts here (staff groups grant no account permissions): whoever may change
users could make themselves a superuser.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import ReadOnlyPasswordHashField
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import password_validators_help_text_html, validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from platform_core import limits
from platform_core.accounts.models import Hospital, Membership, User, normalize_email
from platform_core.accounts.services import (
    USER_ADMIN_FIELDS,
    group_create,
    group_update,
    hospital_create,
    hospital_update,
    membership_grant,
    membership_revoke,
    user_create,
    user_password_set,
    user_unlock,
    user_update,
)
from platform_core.accounts.staff_groups import declared_staff_groups
from platform_core.audit.admin_mixins import ReasonFormMixin, ServiceAdminMixin, reasoned_action


class SuperuserOnlyMixin(admin.ModelAdmin):
    """Explicit permission: only superusers see or write these pages."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request, *args) -> bool:
        return request.user.is_active and request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser and super().has_change_permission(request, obj)

    def has_unlock_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    has_revoke_permission = has_unlock_permission


# --- Users -----------------------------------------------------------------------------------------


class UserCreationForm(forms.ModelForm):
    """New users from the admin: the same password rules as everywhere else, and one account per email."""

    password1 = forms.CharField(
        label="Password",
        widget=forms.PasswordInput,
        strip=False,
        max_length=limits.PASSWORD,
        help_text=password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again", widget=forms.PasswordInput, strip=False, max_length=limits.PASSWORD
    )

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
        if commit:
            raise NotImplementedError("The admin creates users through user_create (UserAdmin.create_through_service).")
        return super().save(commit=False)  # the unsaved instance the admin hands to save_model


class UserChangeForm(ReasonFormMixin, forms.ModelForm):
    password = ReadOnlyPasswordHashField(
        label="Password",
        help_text='Passwords are not stored in clear. <a href="../password/">Set a new password</a> (audited).',
    )
    reason_required_message = "Give a reason for changing an account; it is recorded in the audit trail."

    class Meta:
        model = User
        fields = ("full_name", "is_active", "is_staff", "is_superuser", "groups")


class UserSetPasswordForm(forms.Form):
    password1 = forms.CharField(
        label="New password",
        widget=forms.PasswordInput,
        strip=False,
        max_length=limits.PASSWORD,
        help_text=password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="New password again", widget=forms.PasswordInput, strip=False, max_length=limits.PASSWORD
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), max_length=limits.REASON, help_text="Recorded in the audit trail."
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password1") and cleaned.get("password2") and cleaned["password1"] != cleaned["password2"]:
            self.add_error("password2", "The two passwords do not match.")
        return cleaned


class MembershipInline(admin.TabularInline):
    """Shown for oversight; roles are granted and revoked (with a reason) on the Memberships page."""

    model = Membership
    extra = 0
    fk_name = "user"
    fields = ("hospital", "role", "is_active")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


def _unlock(actor: User, user: User, reason: str) -> None:
    user_unlock(actor=actor, user=user, reason=reason)


@admin.register(User)
class UserAdmin(SuperuserOnlyMixin, ServiceAdminMixin, DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    ordering = ("email",)
    list_display = ("email", "full_name", "is_active", "is_staff", "locked_until")
    search_fields = ("email", "full_name")
    readonly_fields = ("email", "last_login", "locked_until", "failed_login_count")
    fieldsets = (
        (None, {"fields": ("email", "full_name", "password")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        (
            "Lock-out (unlock with the action on the list, with a reason)",
            {"fields": ("locked_until", "failed_login_count")},
        ),
        ("Dates", {"fields": ("last_login",)}),
        ("Reason", {"fields": ("reason",)}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "full_name", "password1", "password2")}),)
    filter_horizontal = ("groups",)
    list_filter = ("is_active", "is_staff", "groups")
    inlines = [MembershipInline]
    actions = [
        reasoned_action(
            description="Unlock the selected accounts",
            service=_unlock,
            permission="unlock",
            done="Unlocked {count} account(s); their failed sign-in counts are reset.",
        )
    ]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    @sensitive_variables("data")  # holds the typed password
    def create_through_service(self, request, form) -> User:
        data = form.cleaned_data
        return user_create(
            actor=request.user, email=data["email"], full_name=data["full_name"], password=data["password1"]
        )

    def update_through_service(self, request, obj, form) -> User:
        data = form.cleaned_data
        return user_update(
            actor=request.user,
            user=obj,
            reason=data.get("reason", ""),
            groups=data["groups"] if "groups" in data else None,
            **{name: data[name] for name in USER_ADMIN_FIELDS if name in data},
        )

    def get_urls(self):
        # Replaces Django's password view (same URL name), which saved the password without an audit event.
        return [
            path(
                "<id>/password/",
                self.admin_site.admin_view(self.user_change_password),
                name="accounts_user_password_change",
            ),
            *super().get_urls(),
        ]

    @method_decorator(sensitive_post_parameters())
    def user_change_password(self, request, id, form_url=""):
        user = self.get_object(request, unquote(id))
        if user is None:
            raise Http404("No such user.")
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        if user.pk == request.user.pk:  # your own password: the page that checks the current one
            return HttpResponseRedirect(reverse("accounts:password-change"))
        form = UserSetPasswordForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                user_password_set(
                    actor=request.user,
                    user=user,
                    password=form.cleaned_data["password1"],
                    reason=form.cleaned_data["reason"],
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]:
                    target = "password1" if field == "password" else field
                    for error in errors:
                        form.add_error(target if target in form.fields else None, error)
            else:
                update_session_auth_hash(request, request.user)
                messages.success(request, "Password set.")
                return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Set password: {user.email}",
            "form": form,
            "opts": self.opts,
            "original": user,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/accounts/user/set_password.html", context)


# --- Hospitals and memberships ----------------------------------------------------------------------


class HospitalAddForm(forms.ModelForm):
    class Meta:
        model = Hospital
        fields = ("code", "name", "country")
        help_texts = {"code": "Short site code, e.g. H01; stored in upper case, part of every pseudonym there."}

    def clean_code(self) -> str:  # as hospital_create stores it, so that a duplicate is caught here already
        return self.cleaned_data["code"].strip().upper()


class HospitalChangeForm(ReasonFormMixin, forms.ModelForm):
    class Meta:
        model = Hospital
        fields = ("name", "country")


@admin.register(Hospital)
class HospitalAdmin(SuperuserOnlyMixin, ServiceAdminMixin, admin.ModelAdmin):
    list_display = ("code", "name", "country")
    search_fields = ("code", "name")

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = HospitalAddForm if obj is None else HospitalChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("code", "name", "country") if obj is None else ("code", "name", "country", "reason")

    def get_readonly_fields(self, request, obj=None):
        return ("code",) if obj is not None else ()  # pseudonyms contain it

    def create_through_service(self, request, form) -> Hospital:
        data = form.cleaned_data
        return hospital_create(actor=request.user, code=data["code"], name=data["name"], country=data["country"])

    def update_through_service(self, request, obj, form) -> Hospital:
        data = form.cleaned_data
        return hospital_update(
            actor=request.user, hospital=obj, reason=data.get("reason", ""), name=data["name"], country=data["country"]
        )


def _revoke(actor: User, membership: Membership, reason: str) -> None:
    membership_revoke(actor=actor, membership=membership, reason=reason)


@admin.register(Membership)
class MembershipAdmin(SuperuserOnlyMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Granted on the add page; revoked with a reason by the action on the list. A row is never edited."""

    list_display = ("user", "hospital", "role", "is_active")
    list_filter = ("role", "hospital", "is_active")
    autocomplete_fields = ("user", "hospital")
    fields = ("user", "hospital", "role", "is_active")
    actions = [
        reasoned_action(
            description="Revoke the selected memberships",
            service=_revoke,
            permission="revoke",
            done="Revoked {count} membership(s).",
        )
    ]

    def get_fields(self, request, obj=None):
        return ("user", "hospital", "role") if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return self.fields if obj is not None else ()

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a row is granted or revoked, never edited

    def create_through_service(self, request, form) -> Membership:
        data = form.cleaned_data
        return membership_grant(actor=request.user, user=data["user"], hospital=data["hospital"], role=data["role"])


# --- Permission groups --------------------------------------------------------------------------------


class GroupChangeForm(ReasonFormMixin, forms.ModelForm):
    class Meta:
        model = Group
        fields = ("name", "permissions")

    def reason_needed(self) -> bool:
        return self.instance.pk is not None and super().reason_needed()


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(SuperuserOnlyMixin, ServiceAdminMixin, DjangoGroupAdmin):
    """Groups declared by the apps (accounts.staff_groups) are shown read-only: they are code, re-created on
    every migrate. Other groups are created and changed through the audited services."""

    form = GroupChangeForm
    list_display = ("name", "declared")

    @admin.display(boolean=True, description="Declared by the code")
    def declared(self, obj: Group) -> bool:
        return obj.name in declared_staff_groups()

    def get_fields(self, request, obj=None):
        return ("name", "permissions") if obj is None else ("name", "permissions", "reason")

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.name in declared_staff_groups():
            return False
        return super().has_change_permission(request, obj)

    def create_through_service(self, request, form) -> Group:
        data = form.cleaned_data
        return group_create(actor=request.user, name=data["name"], permissions=data["permissions"])

    def update_through_service(self, request, obj, form) -> Group:
        data = form.cleaned_data
        return group_update(
            actor=request.user,
            group=obj,
            reason=data.get("reason", ""),
            name=data["name"],
            permissions=data["permissions"],
        )
