"""Monitoring pages: the completeness grid, the data queries of a trial, and the query steps posted from the
case page. Same services and selectors as everywhere (trials.query_services, trials.monitoring)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from platform_core.accounts.decorators import role_required
from platform_core.accounts.models import Role, User
from platform_core.accounts.requests import signed_in_user
from platform_core.accounts.selectors import user_has_role
from trials import query_services
from trials.forms import DataQueryRaiseForm, DataQueryStepForm
from trials.models import Case, DataQueryStatus, FileStatus
from trials.monitoring import GRID_ROLES, QUERY_ROLES, completeness_grid, data_queries_for
from trials.selectors import case_files_for, cases_for, sites_for, trial_roles, user_is_blinded_to_ai
from trials.views import _back_to_case, _trial, case_page, run_service

QUERY_FILTERS = {"unresolved": "Open or answered", "open": "Open", "answered": "Answered", "closed": "Closed"}


@role_required(*GRID_ROLES)
def monitoring(request: HttpRequest, slug: str) -> HttpResponse:
    user = signed_in_user(request)
    trial = _trial(request, slug)
    if not trial_roles(user, trial) & {str(r) for r in GRID_ROLES}:
        raise PermissionDenied("Only the trial's monitors and managers see its completeness grid.")
    sites = list(sites_for(user=user, trial=trial))
    site = None
    if request.GET.get("site"):
        site = next((s for s in sites if s.hospital.code == request.GET["site"]), None)
        if site is None:
            raise Http404("No such site in this trial.")
    grid = completeness_grid(user=user, trial=trial, site=site)
    return render(request, "trials/monitoring.html", {"trial": trial, "grid": grid, "sites": sites, "site": site})


@role_required(*QUERY_ROLES)
def query_list(request: HttpRequest, slug: str) -> HttpResponse:
    user = signed_in_user(request)
    trial = _trial(request, slug)
    shown = request.GET.get("status", "unresolved")
    if shown not in QUERY_FILTERS:
        shown = "unresolved"
    queries = data_queries_for(user).filter(case__subject__trial=trial)
    if shown == "unresolved":
        queries = queries.exclude(status=DataQueryStatus.CLOSED)
    else:
        queries = queries.filter(status=shown)
    return render(
        request,
        "trials/query_list.html",
        {"trial": trial, "queries": list(queries), "shown": shown, "filters": QUERY_FILTERS},
    )


def case_queries_context(*, user: User, case: Case) -> dict[str, Any]:
    """The case page's data-query section (registered as a case page panel in TrialsConfig.ready())."""
    trial = case.subject.trial
    roles = trial_roles(user, trial)
    blinded = user_is_blinded_to_ai(user, trial)
    can_raise = Role.MONITOR in roles and not blinded
    context: dict[str, Any] = {
        "data_queries": list(data_queries_for(user).filter(case=case)),
        "can_raise_query": can_raise,
        "can_answer_query": user_has_role(user, Role.COORDINATOR, hospital=case.subject.site.hospital),
        "can_review_audit": bool(roles & {Role.MONITOR, Role.TRIAL_MANAGER}),
        "query_step_form": DataQueryStepForm(),
    }
    if can_raise:
        files = case_files_for(user).filter(case=case, status=FileStatus.ACCEPTED)
        context["query_raise_form"] = DataQueryRaiseForm(files=files)
    return context


@role_required(Role.MONITOR)
@require_POST
def query_raise(request: HttpRequest, pk: str) -> HttpResponse:
    user = signed_in_user(request)
    case = get_object_or_404(cases_for(user), pk=pk)
    form = DataQueryRaiseForm(request.POST, files=case_files_for(user).filter(case=case, status=FileStatus.ACCEPTED))
    saved = form.is_valid() and run_service(
        form,
        lambda: query_services.data_query_raise(
            actor=user, case=case, text=form.cleaned_data["text"], case_file=form.cleaned_data["case_file"]
        ),
    )
    if (
        not saved
        and Role.MONITOR in trial_roles(user, case.subject.trial)
        and not user_is_blinded_to_ai(user, case.subject.trial)
    ):  # the form, or the service, refused: the case page with the form (shown to this monitor) and its errors
        return case_page(request, case, status=400, query_raise_form=form)
    return _back_to_case(request, pk, form, saved, "Query raised; the site's coordinator will answer it.")


STEPS = {
    "answer": (
        lambda user, query, text: query_services.data_query_answer(actor=user, query=query, text=text),
        "Answer sent.",
    ),
    "close": (
        lambda user, query, text: query_services.data_query_close(actor=user, query=query, note=text),
        "Query closed.",
    ),
    "reopen": (
        lambda user, query, text: query_services.data_query_reopen(actor=user, query=query, reason=text),
        "Query reopened.",
    ),
}


@role_required(Role.MONITOR, Role.COORDINATOR)
@require_POST
def query_step(request: HttpRequest, pk: str, step: str) -> HttpResponse:
    if step not in STEPS:
        raise Http404("Unknown step.")
    user = signed_in_user(request)
    query = get_object_or_404(data_queries_for(user), pk=pk)
    form = DataQueryStepForm(request.POST)
    call, message = STEPS[step]
    saved = form.is_valid() and run_service(form, lambda: call(user, query, form.cleaned_data["text"]))
    if not saved:
        messages.error(request, "Nothing was changed.")
    return _back_to_case(request, str(query.case_id), form, saved, message)
