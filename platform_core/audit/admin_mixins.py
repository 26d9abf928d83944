"""The Django admin is a write path like the pages and the API, so it writes only through the same services.

A model admin either calls a service for each add and change (:class:`ServiceAdminMixin`), or is read-only
(:class:`ReadOnlyAdmin`) with actions that call services (:func:`reasoned_action` asks for the reason the
service needs). The admin never records form data in the audit trail: each service writes its own event from
an explicit list of fields, so a password, token or key typed into a form cannot reach the trail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from platform_core import limits
from platform_core.errors import ApplicationError

REASON_HELP = "Why this change is made; recorded in the audit trail."


def refusal_message(exc: Exception) -> str:
    """One readable sentence from a service's refusal (an ApplicationError or a ValidationError)."""
    if isinstance(exc, ApplicationError):
        return str(exc.message)
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


class ReasonFormMixin(forms.Form):
    """A change form with a reason field, required (before any service is called) when anything changed."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=limits.REASON, help_text=REASON_HELP
    )
    reason_required_message = "Give a reason for this change; it is recorded in the audit trail."

    def reason_needed(self) -> bool:
        return bool(set(self.changed_data) - {"reason"})

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.reason_needed() and not (cleaned.get("reason") or "").strip():
            self.add_error("reason", self.reason_required_message)
        return cleaned


class ServiceAdminMixin(admin.ModelAdmin):
    """Adds and changes call a service; nothing is deleted here; related rows (inlines, many-to-many) are
    written by the services too, never saved from the form.

    Override ``create_through_service(request, form)`` to allow adding and ``update_through_service(request,
    obj, form)`` to allow changing; each returns the saved object. A refusal of the service (an
    ApplicationError or ValidationError) comes back on the page as an error message and nothing is saved.
    """

    create_through_service: Callable[..., models.Model] | None = None
    update_through_service: Callable[..., models.Model] | None = None

    def has_add_permission(self, request, *args: Any) -> bool:
        return self.create_through_service is not None and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        return self.update_through_service is not None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:

        service = self.update_through_service if change else self.create_through_service
        if service is None:
            raise PermissionDenied
        try:
            saved = service(request, obj, form) if change else service(request, form)
        except (ApplicationError, ValidationError) as exc:
            raise ValidationError(refusal_message(exc)) from None
        obj.pk = saved.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change) -> None:
        """Many-to-many values and inline rows are the services' to write (see ``save_model``); inlines here
        are read-only, and nothing of a formset is saved (the admin's change message finds nothing new)."""
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def get_inlines(self, request, obj):
        return super().get_inlines(request, obj) if obj is not None else []  # read-only rows of an existing object

    def delete_model(self, request, obj) -> None:
        raise PermissionDenied

    def delete_queryset(self, request, queryset) -> None:
        raise PermissionDenied

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:  # raised by save_model inside the admin's transaction, now rolled back
            self.message_user(request, " ".join(exc.messages), level=messages.ERROR)
            return HttpResponseRedirect(request.path)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Listed for oversight; written only by the services (which audit every change)."""

    def has_add_permission(self, request, *args: Any) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ScopedAdminMixin(admin.ModelAdmin):
    """The admin shows staff only what the pages would: rows of their hospitals and trials (``scope``), never
    AI outputs of trials they read. Superusers are platform operators and see every row (their every change
    goes through the audited services); the blinding still applies to them where they are also readers."""

    def scope(self, request, queryset):  # override: the rows a staff member may see
        return queryset.none()

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else self.scope(request, queryset)


class ReasonActionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=limits.REASON, help_text=REASON_HELP)


def reasoned_action(
    *,
    description: str,
    service: Callable[[Any, Any, str], Any],
    permission: str = "change",
    done: str = "Done for {count} row(s).",
) -> Callable[..., Any]:
    """An admin action that asks for a reason on its own page, then calls ``service(actor, obj, reason)`` for
    each selected row. Each call is its own audited transaction; a row the service refuses is named in an
    error message and the others still go through. A blank reason calls nothing."""

    def action(modeladmin: admin.ModelAdmin, request, queryset):
        form = ReasonActionForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"].strip()
            done_count, refused = 0, []
            for obj in queryset:
                try:
                    service(request.user, obj, reason)
                except (ApplicationError, ValidationError) as exc:
                    refused.append(f"{obj}: {refusal_message(exc)}")
                else:
                    done_count += 1
            if done_count:
                modeladmin.message_user(request, done.format(count=done_count), level=messages.SUCCESS)
            for line in refused:
                modeladmin.message_user(request, f"Refused, nothing changed for {line}", level=messages.ERROR)
            return None
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": description,
            "opts": modeladmin.model._meta,
            "queryset": queryset,
            "form": form,
            "action_name": action.__name__,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/visus/reasoned_action.html", context)

    action.__name__ = description.lower().replace(" ", "_").strip("_")[:60]
    return admin.action(description=description, permissions=[permission])(action)
