from django.contrib import admin

from platform_core.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: nobody, administrators included, edits the trail (21 CFR 11.10(e))."""

    list_display = ("seq", "occurred_at", "actor_email", "action", "object_type", "object_repr", "hospital_code")
    list_filter = ("action", "hospital_code")
    search_fields = ("object_id", "actor_email", "action")

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False
