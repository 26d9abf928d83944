from django.contrib import admin

from platform_core.audit.admin_mixins import AuditedAdminMixin, ReadOnlyAdmin
from trials.models import Case, Subject, Trial, TrialSite


class TrialSiteInline(admin.TabularInline):
    model = TrialSite
    extra = 0
    fields = ("hospital", "enrolment_target", "status")


@admin.register(Trial)
class TrialAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("protocol_number", "title", "status", "reading_design", "reference_rule")
    list_filter = ("status",)
    search_fields = ("protocol_number", "title", "slug")
    readonly_fields = ("status", "created_by")
    inlines = [TrialSiteInline]

    def save_model(self, request, obj, form, change) -> None:  # noqa: ANN001
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(TrialSite)
class TrialSiteAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("trial", "hospital", "enrolment_target", "status")
    list_filter = ("status", "trial")


@admin.register(Subject)
class SubjectAdmin(ReadOnlyAdmin):
    """Read-only here: subjects are enrolled and withdrawn by coordinators through the audited pages."""

    list_display = ("pseudonym", "trial", "site", "status", "sex", "age")
    list_filter = ("status", "trial")
    search_fields = ("pseudonym",)


@admin.register(Case)
class CaseAdmin(SubjectAdmin):
    list_display = ("subject", "laterality", "visit_day", "status")
    list_filter = ("status", "laterality")
    search_fields = ("subject__pseudonym",)
