"""The navigation each role sees. Later features add their pages here."""

from __future__ import annotations

from dataclasses import dataclass

from platform_core.accounts.models import Role


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: frozenset[str] | None  # None: everyone signed in


ALL_ROLES = frozenset(Role.values)

NAV_ITEMS: list[NavItem] = [
    NavItem("Home", "home", None),
    NavItem("Trials", "trials:trial-list", None),
    NavItem("Audit trail", "audit:event-list", frozenset({Role.TRIAL_MANAGER, Role.MONITOR})),
    NavItem("People", "accounts:people", frozenset({Role.TRIAL_MANAGER})),
    NavItem("Models", "diagnosis:model-list", frozenset({Role.TRIAL_MANAGER})),
    NavItem("API", "api-docs", None),
]


def items_for(roles: set[str], *, is_staff: bool) -> list[NavItem]:
    items = [item for item in NAV_ITEMS if item.roles is None or item.roles & roles]
    if is_staff:
        items.append(NavItem("Admin", "admin:index", None))
    return items
