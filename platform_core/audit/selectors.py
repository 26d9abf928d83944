from __future__ import annotations

from django.apps import apps
from django.db.models import Q, QuerySet

from platform_core.accounts.models import Role, User
from platform_core.accounts.selectors import hospital_ids_for, hospitals_for
from platform_core.audit.models import AuditEvent

AUDIT_ROLES = (Role.TRIAL_MANAGER, Role.MONITOR)


def audit_events_for(user: User) -> QuerySet[AuditEvent]:
    """Events a trial manager or monitor may review, newest first: those recorded at their hospitals, and
    every event of the trials where they hold that role at a site (trial-wide oversight)."""
    codes = hospitals_for(user, roles=AUDIT_ROLES).values("code")
    visible = Q(hospital_code__in=codes)
    if apps.is_installed("trials"):
        trial_site = apps.get_model("trials", "TrialSite")
        slugs = trial_site.objects.filter(hospital__in=hospital_ids_for(user, AUDIT_ROLES)).values("trial__slug")
        visible |= Q(trial_ref__in=slugs)
    return AuditEvent.objects.filter(visible).order_by("-seq")
