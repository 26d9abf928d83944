"""Role-based permission classes for the API. Each view names its permission explicitly."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from platform_core.accounts.models import Role
from platform_core.accounts.selectors import roles_of


class HasAnyRole(BasePermission):
    roles: frozenset[str] = frozenset()
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and roles_of(user) & self.roles)


def roles_required(*roles: Role) -> type[HasAnyRole]:
    return type("HasRole_" + "_".join(roles), (HasAnyRole,), {"roles": frozenset(str(r) for r in roles)})


class IsMember(HasAnyRole):
    """Signed in and holding at least one active membership."""

    roles = frozenset(Role.values)
