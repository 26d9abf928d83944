from typing import Any, ClassVar

from django.contrib import admin
from django.core.exceptions import ValidationError

from platform_core.api.exceptions import ApplicationError
from platform_core.audit.admin_mixins import (
    AuditedAdminMixin,
    ReadOnlyAdmin,
    ScopedAdminMixin,
    ServiceAddAdminMixin,
)
from trials.models import Case, Subject, Trial, TrialSite, TrialStatus
from trials.selectors import cases_for, managed_trials_for, subjects_for, trials_for
from trials.services import EDITABLE_AFTER_DRAFT, trial_site_add


class TrialSiteInline(admin.TabularInline):
    """Shown for oversight. Sites are added and changed on their own admin page (audited) or the trial pages."""

    model = TrialSite
    extra = 0
    fields = ("hospital", "enrolment_target", "status")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Trial)
class TrialAdmin(ScopedAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("protocol_number", "title", "status", "reading_design", "reference_rule")
    list_filter = ("status",)
    search_fields = ("protocol_number", "title", "slug")
    readonly_fields = ("status", "created_by")
    inlines = [TrialSiteInline]

    def scope(self, request, queryset):
        return queryset.filter(pk__in=trials_for(request.user).values("pk"))

    def has_change_permission(self, request, obj=None) -> bool:
        allowed = super().has_change_permission(request, obj)
        if obj is None or request.user.is_superuser:
            return allowed
        return allowed and managed_trials_for(request.user).filter(pk=obj.pk).exists()

    def get_readonly_fields(self, request, obj=None):
        """Once a trial leaves draft its protocol is fixed here as on the trial pages (only the title and the
        visual-field cut-offs may change; status changes go through the audited transitions)."""
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status != TrialStatus.DRAFT:
            readonly += [
                f.name
                for f in Trial._meta.concrete_fields
                if f.editable and f.name not in EDITABLE_AFTER_DRAFT and f.name not in readonly
            ]
        return readonly

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(TrialSite)
class TrialSiteAdmin(ScopedAdminMixin, ServiceAddAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("trial", "hospital", "enrolment_target", "status")
    list_filter = ("status", ("trial", admin.RelatedOnlyFieldListFilter))

    def scope(self, request, queryset):
        return queryset.filter(trial__in=managed_trials_for(request.user).values("pk"))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "trial" and not request.user.is_superuser:
            kwargs["queryset"] = managed_trials_for(request.user)  # a site only for a trial they manage
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        if change or request.user.is_superuser:
            super().save_model(request, obj, form, change)
            return
        # Staff add sites through the same service (and rules, and audit event) as the trial pages.
        try:
            site = trial_site_add(
                actor=request.user, trial=obj.trial, hospital=obj.hospital, enrolment_target=obj.enrolment_target
            )
        except (ApplicationError, ValidationError) as exc:
            raise self.refused(exc) from None
        obj.pk = site.pk
        obj.refresh_from_db()

    def get_readonly_fields(self, request, obj=None):
        # Moving a site to another trial or hospital would hand its subjects to other people.
        return ("trial", "hospital") if obj is not None else ()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subject)
class SubjectAdmin(ScopedAdminMixin, ReadOnlyAdmin):
    """Read-only here: subjects are enrolled and withdrawn by coordinators through the audited pages."""

    list_display: tuple[str, ...] = ("pseudonym", "trial", "site", "status", "sex", "age")
    list_filter: ClassVar[tuple[Any, ...]] = ("status", ("trial", admin.RelatedOnlyFieldListFilter))
    search_fields = ("pseudonym",)

    def scope(self, request, queryset):
        return queryset.filter(pk__in=subjects_for(request.user).values("pk"))


@admin.register(Case)
class CaseAdmin(SubjectAdmin):
    list_display = ("subject", "laterality", "visit_day", "status")
    list_filter = ("status", "laterality")
    search_fields = ("subject__pseudonym",)

    def scope(self, request, queryset):
        return queryset.filter(pk__in=cases_for(request.user).values("pk"))
