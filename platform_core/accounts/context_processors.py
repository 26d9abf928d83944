from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from platform_core.accounts.navigation import items_for
from platform_core.accounts.selectors import memberships_of


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": [], "user_memberships": [], "user_roles": set()}
    memberships = list(memberships_of(user))
    roles = {m.role for m in memberships}
    items = [
        {"label": item.label, "url": reverse(item.url_name), "active": request.path == reverse(item.url_name)}
        for item in items_for(roles, is_staff=user.is_staff)
    ]
    return {"nav_items": items, "user_memberships": memberships, "user_roles": roles}
