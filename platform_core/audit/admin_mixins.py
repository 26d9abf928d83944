"""Admin pages write through the audit trail too: every add, change and delete is recorded."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction

from platform_core.audit.services import audit_record, diff


def _hospital_code(obj: Any) -> str:
    hospital = getattr(obj, "hospital", None)
    if hospital is not None:
        return hospital.code
    return getattr(obj, "code", "") if obj.__class__.__name__ == "Hospital" else ""


class AuditedAdminMixin(admin.ModelAdmin):
    audit_exclude = ("password", "last_login", "updated_at", "created_at")

    def save_model(self, request, obj, form, change) -> None:
        fields = [f for f in form.changed_data if f not in self.audit_exclude]
        old = {f: form.initial.get(f) for f in fields} if change else None
        new = {f: form.cleaned_data.get(f) for f in fields}
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_record(
                actor=request.user,
                action=f"{obj._meta.model_name}.{'change' if change else 'create'}",
                obj=obj,
                hospital_code=_hospital_code(obj),
                changes=diff(old, {k: (str(v) if hasattr(v, "pk") else v) for k, v in new.items()}),
                reason="changed in the admin",
            )

    def save_formset(self, request, form, formset, change) -> None:
        """Inline rows (a user's memberships, say) are audited like the object they belong to."""

        def plain(value: Any) -> Any:
            return str(value) if hasattr(value, "pk") else value

        def value_of(obj: Any, name: str) -> Any:  # a relation as its key, as the form's initial holds it
            return plain(getattr(obj, obj._meta.get_field(name).attname))

        before = {
            inline.instance.pk: {name: plain(inline.initial.get(name)) for name in inline.changed_data}
            for inline in formset.forms
            if inline.instance.pk is not None
        }
        with transaction.atomic():
            for inline in formset.deleted_forms:
                if inline.instance.pk is not None:
                    audit_record(
                        actor=request.user,
                        action=f"{inline.instance._meta.model_name}.delete",
                        obj=inline.instance,
                        hospital_code=_hospital_code(inline.instance),
                        reason="deleted in the admin",
                    )
            super().save_formset(request, form, formset, change)
            for obj in formset.new_objects:
                fields = [f.name for f in obj._meta.concrete_fields if f.name not in self.audit_exclude and f.editable]
                audit_record(
                    actor=request.user,
                    action=f"{obj._meta.model_name}.create",
                    obj=obj,
                    hospital_code=_hospital_code(obj),
                    changes=diff(None, {f: value_of(obj, f) for f in fields if f != "id"}),
                    reason="created in the admin",
                )
            for obj, changed in formset.changed_objects:
                names = [name for name in changed if name not in self.audit_exclude]
                audit_record(
                    actor=request.user,
                    action=f"{obj._meta.model_name}.change",
                    obj=obj,
                    hospital_code=_hospital_code(obj),
                    changes=diff(
                        {n: before.get(obj.pk, {}).get(n) for n in names}, {n: value_of(obj, n) for n in names}
                    ),
                    reason="changed in the admin",
                )

    def delete_model(self, request, obj) -> None:
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=f"{obj._meta.model_name}.delete",
                obj=obj,
                hospital_code=_hospital_code(obj),
                reason="deleted in the admin",
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Listed for oversight; written only by the services (which audit every change)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ScopedAdminMixin(admin.ModelAdmin):
    """The admin shows staff only what the pages would: rows of their hospitals and trials (``scope``), never
    AI outputs of trials they read. Superusers are platform operators and see every row (their every change
    is audited); the blinding still applies to them where they are also readers."""

    def scope(self, request, queryset):  # override: the rows a staff member may see
        return queryset.none()

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else self.scope(request, queryset)


class ServiceAddAdminMixin(admin.ModelAdmin):
    """Admin add pages that create through a service. ``save_model`` raises ``refused(exc)`` when the service
    says no; the add page then shows that reason as an error message, and nothing is saved."""

    @staticmethod
    def refused(exc: Exception) -> Exception:
        from django.core.exceptions import ValidationError

        from platform_core.api.exceptions import ApplicationError

        message = exc.message if isinstance(exc, ApplicationError) else " ".join(getattr(exc, "messages", [str(exc)]))
        return ValidationError(message)

    def add_view(self, request, form_url="", extra_context=None):
        from django.contrib import messages
        from django.core.exceptions import ValidationError
        from django.http import HttpResponseRedirect

        try:
            return super().add_view(request, form_url, extra_context)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), level=messages.ERROR)
            return HttpResponseRedirect(request.path)
