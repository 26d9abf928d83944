from django.contrib import admin

from platform_core.audit.admin_mixins import ReadOnlyAdmin
from platform_core.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: nobody, administrators included, edits the trail (21 CFR 11.10(e))."""

    list_display = ("seq", "occurred_at", "actor_email", "action", "object_type", "object_repr", "hospital_code")
    list_filter = ("action", "hospital_code")
    search_fields = ("object_id", "actor_email", "action")
