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

    def save_model(self, request, obj, form, change) -> None:  # noqa: ANN001
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

    def delete_model(self, request, obj) -> None:  # noqa: ANN001
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=f"{obj._meta.model_name}.delete",
                obj=obj,
                hospital_code=_hospital_code(obj),
                reason="deleted in the admin",
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:  # noqa: ANN001
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Listed for oversight; written only by the services (which audit every change)."""

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False
