"""Trials in the admin: created and changed through the same audited services (and rules) as the trial pages;
subjects and cases are read-only here (coordinators enrol and withdraw through the audited pages)."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin

from platform_core import limits
from platform_core.audit.admin_mixins import (
    ReadOnlyAdmin,
    ReasonFormMixin,
    ScopedAdminMixin,
    ServiceAdminMixin,
    reasoned_action,
)
from trials.models import Case, Subject, Trial, TrialSite, TrialStatus
from trials.selectors import cases_for, managed_trials_for, subjects_for, trials_for
from trials.services import (
    EDITABLE_AFTER_DRAFT,
    TRIAL_FIELDS,
    trial_create,
    trial_site_add,
    trial_site_update,
    trial_transition,
    trial_update,
)


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

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class TrialAddForm(forms.ModelForm):
    class Meta:
        model = Trial
        fields = TRIAL_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits.bound_json_form_fields(self.fields)


class TrialChangeForm(ReasonFormMixin, forms.ModelForm):
    reason_required_message = "Give a reason for changing a trial that is under way."

    class Meta:
        model = Trial
        fields = TRIAL_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits.bound_json_form_fields(self.fields)

    def reason_needed(self) -> bool:  # a draft's protocol is still being written (as on the trial pages)
        return self.instance.status != TrialStatus.DRAFT and super().reason_needed()


def _transition_to(status: str):
    def transition(actor, trial: Trial, reason: str) -> None:
        trial_transition(actor=actor, trial=trial, status=status, reason=reason)

    return transition


@admin.register(Trial)
class TrialAdmin(ScopedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Status changes are the list's actions, through the audited transitions of the trial pages."""

    list_display = ("protocol_number", "title", "status", "reading_design", "reference_rule")
    list_filter = ("status",)
    search_fields = ("protocol_number", "title", "slug")
    inlines = [TrialSiteInline]
    actions = [
        reasoned_action(description="Start recruiting", service=_transition_to(TrialStatus.RECRUITING)),
        reasoned_action(description="Start reading", service=_transition_to(TrialStatus.READING)),
        reasoned_action(description="Close the selected trials", service=_transition_to(TrialStatus.CLOSED)),
    ]

    def scope(self, request, queryset):
        return queryset.filter(pk__in=trials_for(request.user).values("pk"))

    def has_change_permission(self, request, obj=None) -> bool:
        allowed = super().has_change_permission(request, obj)
        if obj is None or request.user.is_superuser:
            return allowed
        return allowed and managed_trials_for(request.user).filter(pk=obj.pk).exists()

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = TrialAddForm if obj is None else TrialChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return TRIAL_FIELDS
        return ("status", *TRIAL_FIELDS, "created_by", "reason")

    def get_readonly_fields(self, request, obj=None):
        """Once a trial leaves draft its protocol is fixed here as on the trial pages (only the title and the
        visual-field cut-offs may change; status changes go through the audited transitions)."""
        if obj is None:
            return ()
        readonly = ["status", "created_by"]
        if obj.status != TrialStatus.DRAFT:
            readonly += [name for name in TRIAL_FIELDS if name not in EDITABLE_AFTER_DRAFT]
        return readonly

    def create_through_service(self, request, form) -> Trial:
        return trial_create(actor=request.user, **{name: form.cleaned_data[name] for name in TRIAL_FIELDS})

    def update_through_service(self, request, obj, form) -> Trial:
        data = form.cleaned_data
        return trial_update(
            actor=request.user,
            trial=obj,
            reason=data.get("reason", ""),
            **{name: data[name] for name in TRIAL_FIELDS if name in data},
        )


class TrialSiteChangeForm(ReasonFormMixin, forms.ModelForm):
    reason_required_message = "Give a reason for changing a site."

    class Meta:
        model = TrialSite
        fields = ("enrolment_target", "status")


@admin.register(TrialSite)
class TrialSiteAdmin(ScopedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Sites are added and changed through the trial pages' services: only by a manager of the trial (a
    superuser included), never to a closed trial, and a change needs a reason."""

    list_display = ("trial", "hospital", "enrolment_target", "status")
    list_filter = ("status", ("trial", admin.RelatedOnlyFieldListFilter))

    def scope(self, request, queryset):
        return queryset.filter(trial__in=managed_trials_for(request.user).values("pk"))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "trial" and not request.user.is_superuser:
            kwargs["queryset"] = managed_trials_for(request.user)  # a site only for a trial they manage
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            kwargs["form"] = TrialSiteChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("trial", "hospital", "enrolment_target")
        return ("trial", "hospital", "enrolment_target", "status", "reason")

    def get_readonly_fields(self, request, obj=None):
        # Moving a site to another trial or hospital would hand its subjects to other people.
        return ("trial", "hospital") if obj is not None else ()

    def create_through_service(self, request, form) -> TrialSite:
        data = form.cleaned_data
        return trial_site_add(
            actor=request.user,
            trial=data["trial"],
            hospital=data["hospital"],
            enrolment_target=data["enrolment_target"],
        )

    def update_through_service(self, request, obj, form) -> TrialSite:
        data = form.cleaned_data
        return trial_site_update(
            actor=request.user,
            site=obj,
            reason=data.get("reason", ""),
            enrolment_target=data["enrolment_target"],
            status=data["status"],
        )


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
