from __future__ import annotations

from collections.abc import Callable

from django.db.models import Q, QuerySet

from platform_core.accounts.models import Role, User
from platform_core.accounts.selectors import hospitals_for
from platform_core.audit.models import AuditEvent

AUDIT_ROLES = (Role.TRIAL_MANAGER, Role.MONITOR)

# The kernel knows no trial: apps above it widen what a reviewer sees by registering a scope provider
# (trials: every event of a trial where the user holds an audit role at a site), from AppConfig.ready().
AuditScopeProvider = Callable[[User, tuple[Role, ...]], Q]
_scope_providers: list[AuditScopeProvider] = []


def register_audit_scope(provider: AuditScopeProvider) -> AuditScopeProvider:
    """Add ``provider(user, roles) -> Q`` over AuditEvent; the events it matches become visible too."""
    if provider not in _scope_providers:
        _scope_providers.append(provider)
    return provider


def audit_events_for(user: User) -> QuerySet[AuditEvent]:
    """Events a trial manager or monitor may review, newest first: those recorded at their hospitals, and
    those the registered scope providers add (trials: every event of the trials where they hold that role
    at a site, trial-wide oversight)."""
    codes = hospitals_for(user, roles=AUDIT_ROLES).values("code")
    visible = Q(hospital_code__in=codes)
    for provider in _scope_providers:
        visible |= provider(user, AUDIT_ROLES)
    return AuditEvent.objects.filter(visible).order_by("-seq")
