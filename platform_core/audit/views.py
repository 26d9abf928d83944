from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from platform_core.accounts.decorators import role_required
from platform_core.accounts.requests import signed_in_user
from platform_core.audit.selectors import AUDIT_ROLES, audit_events_for


@role_required(*AUDIT_ROLES)
def event_list(request: HttpRequest) -> HttpResponse:
    events = audit_events_for(signed_in_user(request))
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "audit/event_list.html", {"page": page})
