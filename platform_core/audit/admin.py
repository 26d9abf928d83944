from django.contrib import admin

from platform_core.audit.admin_mixins import ReadOnlyAdmin, ScopedAdminMixin
from platform_core.audit.models import AuditEvent
from platform_core.audit.selectors import audit_events_for


@admin.register(AuditEvent)
class AuditEventAdmin(ScopedAdminMixin, ReadOnlyAdmin):
    """Read-only: nobody, administrators included, edits the trail (21 CFR 11.10(e))."""

    list_display = ("seq", "occurred_at", "actor_email", "action", "object_type", "object_repr", "hospital_code")
    list_filter = ("action", "hospital_code")
    search_fields = ("object_id", "actor_email", "action")

    def scope(self, request, queryset):
        return queryset.filter(pk__in=audit_events_for(request.user).values("pk"))
