from __future__ import annotations

from django.db.models import QuerySet

from platform_core.accounts.models import Role, User
from platform_core.accounts.selectors import hospitals_for
from platform_core.audit.models import AuditEvent

AUDIT_ROLES = (Role.TRIAL_MANAGER, Role.MONITOR)


def audit_events_for(user: User) -> QuerySet[AuditEvent]:
    """Events recorded at the hospitals where ``user`` is a trial manager or monitor, newest first."""
    codes = hospitals_for(user, roles=AUDIT_ROLES).values("code")
    return AuditEvent.objects.filter(hospital_code__in=codes).order_by("-seq")
