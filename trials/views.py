"""Pages for trial managers, coordinators and monitors. Same services and selectors as the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from platform_core.accounts.decorators import role_required
from platform_core.accounts.models import Role
from platform_core.accounts.requests import signed_in_user
from platform_core.accounts.selectors import user_has_role
from platform_core.errors import ApplicationError
from platform_core.storage import serve_private
from trials import file_services, hooks, services
from trials.charts import accrual_figure
from trials.forms import (
    CaseFileRetireForm,
    CaseForm,
    CaseRnflForm,
    CaseStatusForm,
    EnrolForm,
    SiteAddForm,
    SiteUpdateForm,
    TransitionForm,
    TrialForm,
    WithdrawForm,
)
from trials.models import TRIAL_TRANSITIONS, Case, CaseFile, DataQueryStatus, FileStatus, Modality, TrialStatus
from trials.monitoring import data_queries_for
from trials.selectors import (
    SUBJECT_ROLES,
    accrual_for,
    case_checklist,
    case_files_for,
    cases_for,
    coordinated_sites,
    enrolled_counts,
    sites_for,
    subject_with_cases,
    subjects_for,
    trial_roles,
    trials_for,
)


def run_service(form: forms.Form, call: Callable[[], Any]) -> Any | None:
    """Call a service; put its refusal on the form (nothing was changed) and return None."""
    try:
        return call()
    except ApplicationError as exc:
        form.add_error(None, exc.message)
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                target = field if field in form.fields else None
                for error in errors:
                    form.add_error(target, error if target else f"{field}: {error}" if field != "__all__" else error)
        else:
            for error in exc.messages:
                form.add_error(None, error)
    return None


def _trial(request: HttpRequest, slug: str):
    return get_object_or_404(trials_for(signed_in_user(request)), slug=slug)


def _require(roles: set[str], wanted: set) -> None:
    if not roles & {str(r) for r in wanted}:
        raise PermissionDenied("Your role in this trial does not give access to this page.")


@role_required(*Role)
def trial_list(request: HttpRequest) -> HttpResponse:
    trials = trials_for(signed_in_user(request)).order_by("protocol_number")
    return render(request, "trials/trial_list.html", {"trials": trials})


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def trial_create(request: HttpRequest) -> HttpResponse:
    form = TrialForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        trial = run_service(form, lambda: services.trial_create(actor=signed_in_user(request), **form.trial_fields()))
        if trial is not None:
            messages.success(request, f"Trial {trial.protocol_number} created as a draft.")
            return redirect("trials:trial-detail", slug=trial.slug)
    return render(request, "trials/trial_form.html", {"form": form, "creating": True})


@role_required(*Role)
def trial_detail(request: HttpRequest, slug: str) -> HttpResponse:
    trial = _trial(request, slug)
    roles = trial_roles(signed_in_user(request), trial)
    sites = list(sites_for(user=signed_in_user(request), trial=trial))
    counts = enrolled_counts(trial)
    for site in sites:
        row = counts.get(site.pk, {})
        setattr(site, "enrolled", row.get("total", 0))  # noqa: B010 - shown next to the site's own fields
        setattr(site, "withdrawn", row.get("withdrawn", 0))  # noqa: B010
    context: dict[str, Any] = {
        "trial": trial,
        "roles": roles,
        "sites": sites,
        "is_manager": Role.TRIAL_MANAGER in roles,
        "can_see_subjects": bool(roles & {str(r) for r in SUBJECT_ROLES}),
        "can_enrol": trial.is_recruiting and coordinated_sites(user=signed_in_user(request), trial=trial).exists(),
        # In the life cycle's order (draft, recruiting, reading, closed): the irreversible "closed" comes last.
        "transitions": [s for s in TrialStatus if s in TRIAL_TRANSITIONS[trial.status]],
        # Role-specific links: monitoring for monitors and managers (queries for coordinators too), the reading
        # worklist for readers, exports and reading progress for statisticians.
        "can_monitor": bool(roles & {Role.TRIAL_MANAGER, Role.MONITOR}),
        "can_see_queries": bool(roles & {Role.TRIAL_MANAGER, Role.MONITOR, Role.COORDINATOR})
        and Role.READER not in roles,
        "is_reader": Role.READER in roles,
        "is_statistician": Role.STATISTICIAN in roles,
        # Only what the trial's modalities need: visual-field cut-offs when it collects visual fields, the glaucoma
        # fusion (which combines the evidence of several modalities) when it collects more than one.
        "collects_visual_fields": Modality.VISUAL_FIELD in trial.modalities,
        "fuses_modalities": len(set(trial.modalities)) > 1,
    }
    if context["can_see_queries"]:
        context["unresolved_queries"] = (
            data_queries_for(signed_in_user(request))
            .filter(case__subject__trial=trial)
            .exclude(status=DataQueryStatus.CLOSED)
            .count()
        )
    if roles & {Role.TRIAL_MANAGER, Role.MONITOR}:
        accrual = accrual_for(trial)
        first = min((t for site in accrual for t in site["enrolled_at"]), default=trial.created_at)
        figure = accrual_figure(
            accrual, title=f"Accrual: {trial.protocol_number}", start=min(first, trial.created_at), end=timezone.now()
        )
        context["accrual_json"] = json.loads(json.dumps(figure, cls=DjangoJSONEncoder))
    return render(request, "trials/trial_detail.html", context)


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def trial_edit(request: HttpRequest, slug: str) -> HttpResponse:
    trial = _trial(request, slug)
    _require(trial_roles(signed_in_user(request), trial), {Role.TRIAL_MANAGER})
    form = TrialForm(request.POST or None, trial=trial)
    if request.method == "POST" and form.is_valid():
        updated = run_service(
            form,
            lambda: services.trial_update(
                actor=signed_in_user(request),
                trial=trial,
                reason=form.cleaned_data.get("reason", ""),
                **form.trial_fields(),
            ),
        )
        if updated is not None:
            messages.success(request, "Trial saved.")
            return redirect("trials:trial-detail", slug=updated.slug)
    return render(request, "trials/trial_form.html", {"form": form, "trial": trial, "creating": False})


# What each move does, shown on the confirmation page before the manager confirms it.
TRANSITION_EFFECTS: dict[str, list[str]] = {
    TrialStatus.RECRUITING: [
        "Coordinators at the trial's active sites can enrol subjects, open cases and upload files.",
        "The protocol is fixed from now on: the address (slug), the subject ID prefix, the modalities, the reading "
        "form, readers per case, the reading design and the reference standard can no longer change. The title and "
        "the visual-field cut-offs stay editable, with a reason.",
        "A trial never returns to draft.",
    ],
    TrialStatus.READING: [
        "Enrolment stops: no new subjects. Sites can still open cases and upload files for enrolled subjects.",
        "Readers can start their worklists: reads are accepted only while the trial is reading.",
        "A trial never returns to recruiting.",
    ],
    TrialStatus.CLOSED: [
        "This is final: nothing can reopen the trial.",
        "No more reads, cases, files or measurements, and no site can be added or changed.",
        "The data stay available for evaluation and exports. The reason is recorded in the audit trail.",
    ],
}


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def trial_transition(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: what moving the trial to ``?status=`` does, and a form to confirm it; POST: the confirmed move."""
    trial = _trial(request, slug)
    _require(trial_roles(signed_in_user(request), trial), {Role.TRIAL_MANAGER})
    form = TransitionForm(request.POST or None, initial={"status": request.GET.get("status", "")})
    target = request.POST.get("status") if request.method == "POST" else request.GET.get("status")
    if target not in TRIAL_TRANSITIONS[trial.status]:
        messages.error(request, "Choose one of the moves offered on the trial page.")
        return redirect("trials:trial-detail", slug=slug)
    if request.method == "POST" and form.is_valid():
        done = run_service(
            form,
            lambda: services.trial_transition(
                actor=signed_in_user(request),
                trial=trial,
                status=form.cleaned_data["status"],
                reason=form.cleaned_data["reason"],
            ),
        )
        if done is not None:
            messages.success(request, f"The trial is now {done.get_status_display().lower()}.")
            return redirect("trials:trial-detail", slug=slug)
    return render(
        request,
        "trials/transition_confirm.html",
        {
            "trial": trial,
            "form": form,
            "target": TrialStatus(target),
            "effects": TRANSITION_EFFECTS[target],
            "reason_required": target == TrialStatus.CLOSED,
        },
    )


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def site_add(request: HttpRequest, slug: str) -> HttpResponse:
    trial = _trial(request, slug)
    _require(trial_roles(signed_in_user(request), trial), {Role.TRIAL_MANAGER})
    form = SiteAddForm(request.POST or None, trial=trial)
    if request.method == "POST" and form.is_valid():
        site = run_service(
            form, lambda: services.trial_site_add(actor=signed_in_user(request), trial=trial, **form.cleaned_data)
        )
        if site is not None:
            messages.success(request, f"{site.hospital.code} added as a site.")
            return redirect("trials:trial-detail", slug=slug)
    return render(request, "trials/site_form.html", {"form": form, "trial": trial})


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def site_edit(request: HttpRequest, slug: str, pk: str) -> HttpResponse:
    trial = _trial(request, slug)
    _require(trial_roles(signed_in_user(request), trial), {Role.TRIAL_MANAGER})
    site = get_object_or_404(sites_for(user=signed_in_user(request), trial=trial), pk=pk)
    form = SiteUpdateForm(
        request.POST or None, initial={"enrolment_target": site.enrolment_target, "status": site.status}
    )
    if request.method == "POST" and form.is_valid():
        done = run_service(
            form, lambda: services.trial_site_update(actor=signed_in_user(request), site=site, **form.cleaned_data)
        )
        if done is not None:
            messages.success(request, f"Site {site.hospital.code} saved.")
            return redirect("trials:trial-detail", slug=slug)
    return render(request, "trials/site_form.html", {"form": form, "trial": trial, "site": site})


@role_required(*SUBJECT_ROLES)
def subject_list(request: HttpRequest, slug: str) -> HttpResponse:
    trial = _trial(request, slug)
    subjects = subjects_for(signed_in_user(request)).filter(trial=trial)
    can_enrol = trial.is_recruiting and coordinated_sites(user=signed_in_user(request), trial=trial).exists()
    return render(request, "trials/subject_list.html", {"trial": trial, "subjects": subjects, "can_enrol": can_enrol})


@role_required(Role.COORDINATOR)
@require_http_methods(["GET", "POST"])
def subject_enrol(request: HttpRequest, slug: str) -> HttpResponse:
    trial = _trial(request, slug)
    sites = coordinated_sites(user=signed_in_user(request), trial=trial)
    if not sites.exists():
        raise Http404("You coordinate no site of this trial.")
    form = EnrolForm(request.POST or None, trial=trial, sites=sites)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        subject = run_service(
            form,
            lambda: services.subject_enroll(
                actor=signed_in_user(request),
                site=data["site"],
                eligibility=form.eligibility(),
                consent_date=data["consent_date"],
                consent_form_version=data["consent_form_version"] or "",
                sex=data["sex"],
                age=data["age"],
                diabetes_type=data["diabetes_type"],
                diabetes_duration_years=data["diabetes_duration_years"],
                submission_token=data["submission_token"],
            ),
        )
        if subject is not None:
            messages.success(request, f"Subject enrolled: {subject.pseudonym}")
            return redirect("trials:subject-detail", slug=slug, pseudonym=subject.pseudonym)
    return render(request, "trials/enrol_form.html", {"form": form, "trial": trial})


def _subject(request: HttpRequest, slug: str, pseudonym: str):
    trial = _trial(request, slug)
    return get_object_or_404(
        subject_with_cases(subjects_for(signed_in_user(request))), trial=trial, pseudonym=pseudonym
    )


@role_required(*SUBJECT_ROLES)
def subject_detail(request: HttpRequest, slug: str, pseudonym: str) -> HttpResponse:
    subject = _subject(request, slug, pseudonym)
    can_write = user_has_role(signed_in_user(request), Role.COORDINATOR, hospital=subject.site.hospital)
    return render(
        request,
        "trials/subject_detail.html",
        {
            "trial": subject.trial,
            "subject": subject,
            "can_write": can_write,
            "withdraw_form": WithdrawForm(),
            "case_form": CaseForm(),
        },
    )


@role_required(Role.COORDINATOR)
@require_POST
def subject_withdraw(request: HttpRequest, slug: str, pseudonym: str) -> HttpResponse:
    subject = _subject(request, slug, pseudonym)
    form = WithdrawForm(request.POST)
    if form.is_valid() and run_service(
        form,
        lambda: services.subject_withdraw(
            actor=signed_in_user(request), subject=subject, reason=form.cleaned_data["reason"]
        ),
    ):
        messages.success(request, f"{subject.pseudonym} withdrawn; their data is kept.")
    else:
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
    return redirect("trials:subject-detail", slug=slug, pseudonym=pseudonym)


@role_required(Role.COORDINATOR)
@require_POST
def case_add(request: HttpRequest, slug: str, pseudonym: str) -> HttpResponse:
    subject = _subject(request, slug, pseudonym)
    form = CaseForm(request.POST)
    if form.is_valid():
        case = run_service(
            form, lambda: services.case_create(actor=signed_in_user(request), subject=subject, **form.cleaned_data)
        )
        if case is not None:
            messages.success(request, f"Case {case.label} added.")
            return redirect("trials:case-detail", pk=case.pk)
    for errors in form.errors.values():
        for error in errors:
            messages.error(request, str(error))
    return redirect("trials:subject-detail", slug=slug, pseudonym=pseudonym)


@role_required(*SUBJECT_ROLES)
def case_detail(request: HttpRequest, pk: str) -> HttpResponse:
    return case_page(request, get_object_or_404(cases_for(signed_in_user(request)), pk=pk))


def _retire_form(case_file: CaseFile, files: list[CaseFile], data: Any = None) -> CaseFileRetireForm:
    """A file's withdraw-or-replace form; its own ids (one per file card), so its error summary links its fields."""
    return CaseFileRetireForm(
        data, auto_id=f"id_%s_{case_file.pk.hex[:8]}", replacements=_replacements(case_file, files)
    )


def case_page(
    request: HttpRequest,
    case: Case,
    *,
    status: int = 200,
    refused_retire: tuple[CaseFile, forms.Form] | None = None,
    **refused_forms: forms.Form,
) -> HttpResponse:
    """The case page. A form whose POST was refused comes back bound, at status 400, with its error summary (each
    error a link to its field, by the field's label): ``refused_retire`` (a file and its form), or a form of the
    page's panels by its context name (e.g. ``query_raise_form``)."""
    can_write = user_has_role(signed_in_user(request), Role.COORDINATOR, hospital=case.subject.site.hospital)
    files = list(case_files_for(signed_in_user(request)).filter(case=case).select_related("superseded_by"))
    can_change_files = can_write and case.status == "open"
    placed = False
    for f in files:
        if can_change_files and f.status == FileStatus.ACCEPTED:
            refused = refused_retire is not None and refused_retire[0].pk == f.pk
            placed = placed or refused
            f.retire_form = refused_retire[1] if refused_retire and refused else _retire_form(f, files)  # type: ignore[attr-defined]
    if refused_retire is not None and not placed:  # the file or case can no longer change: no form to show it on
        for error in form_error_texts(refused_retire[1]):
            messages.error(request, error)
    return render(
        request,
        "trials/case_detail.html",
        {
            "case": case,
            "subject": case.subject,
            "trial": case.subject.trial,
            "can_write": can_write,
            "can_upload": can_write and case.status == "open" and not case.subject.is_withdrawn,
            "files": files,
            "active_count": sum(f.status == FileStatus.ACCEPTED for f in files),
            "checklist": case_checklist(case),
            "max_upload_mb": settings.VISUS_MAX_UPLOAD_MB,
            "status_form": CaseStatusForm(initial={"status": case.status}),
            "collects_oct": "oct" in case.subject.trial.modalities,
            "rnfl_form": CaseRnflForm(initial={"thickness_um": case.oct_rnfl_thickness_um}),
            **case_page_extras(request, case),
            **refused_forms,
        },
        status=status,
    )


def _replacements(case_file: CaseFile, files: list[CaseFile]) -> list[tuple[str, str]]:
    """Active files of the same modality uploaded after ``case_file``: what can replace it."""
    return [
        (str(f.pk), f"{f.get_modality_display()} {f.sha256[:12]} ({timezone.localtime(f.created_at):%Y-%m-%d %H:%M})")
        for f in files
        if f.pk != case_file.pk
        and f.status == FileStatus.ACCEPTED
        and f.modality == case_file.modality
        and f.created_at >= case_file.created_at
    ]


@role_required(Role.COORDINATOR)
@require_POST
def case_file_retire(request: HttpRequest, pk: str) -> HttpResponse:
    """Withdraw a case file, or mark it superseded by a newer upload, with a reason (audited)."""
    case_file_obj = get_object_or_404(case_files_for(signed_in_user(request)), pk=pk)
    case = case_file_obj.case
    files = list(case_files_for(signed_in_user(request)).filter(case=case))
    form = _retire_form(case_file_obj, files, request.POST)
    user = signed_in_user(request)
    saved = None
    if form.is_valid():
        reason = form.cleaned_data["reason"]
        if form.cleaned_data["action"] == "withdraw":
            saved = run_service(
                form, lambda: file_services.case_file_withdraw(actor=user, case_file=case_file_obj, reason=reason)
            )
        else:
            replacement = next(f for f in files if str(f.pk) == form.cleaned_data["replacement"])
            saved = run_service(
                form,
                lambda: file_services.case_file_supersede(
                    actor=user, case_file=case_file_obj, replacement=replacement, reason=reason
                ),
            )
    if saved is None:  # the form, or the service, refused: the case page with this file's form and its errors
        return case_page(request, case, status=400, refused_retire=(case_file_obj, form))
    message = "File withdrawn." if form.cleaned_data.get("action") == "withdraw" else "File marked as superseded."
    return _back_to_case(request, str(case.pk), form, saved, message)


# The example and template: a normal right-eye 24-2 field (point order of VISUAL_FIELD_CSV.md, blind spot empty).
VF_TEMPLATE_SOURCE = (
    "eye,age,s1,s2,s3,s4,s5,s6,s7,s8,s9,s10,s11,s12,s13,s14,s15,s16,s17,s18,s19,s20,s21,s22,s23,s24,s25,s26,s27,s28,s29,s30,s31,s32,s33,s34,s35,s36,s37,s38,s39,s40,s41,s42,s43,s44,s45,s46,s47,s48,s49,s50,s51,s52,s53,s54,md,psd,vfi,ght,fixation_losses,fixation_checks,false_positives,false_negatives\n"
    "OD,64,27,28,28,27,28,29,30,30,29,28,28,30,31,32,32,31,30,28,29,31,33,33,33,32,31,,29,29,31,33,34,33,32,31,,29,28,30,32,32,32,31,30,28,28,30,31,31,30,29,27,28,28,27,-0.7,1.6,99,WNL,1,14,2,3\n"
)
VF_CSV_COLUMNS = [
    ("eye", "yes", "", "OD (right eye) or OS (left eye)"),
    ("age", "yes", "years", "age at the test, decimals allowed; enter 90 for ages over 89"),
    (
        "s1 ... s54",
        "yes",
        "dB",
        "threshold sensitivity at each 24-2 point, row by row from the top, left to right, "
        "right-eye orientation (a left eye mirrored); s26 and s35 (blind spot) may be empty; <0 for not seen",
    ),
    ("fixation_losses", "yes", "count", "fixation losses, e.g. 2 for 2/14"),
    ("fixation_checks", "yes", "count", "fixation checks, e.g. 14"),
    ("false_positives", "yes", "%", "false-positive rate in percent"),
    ("false_negatives", "yes", "%", "false-negative rate in percent"),
    ("md", "no", "dB", "Mean Deviation printed by the perimeter"),
    ("psd", "no", "dB", "Pattern Standard Deviation printed by the perimeter"),
    ("vfi", "no", "%", "Visual Field Index printed by the perimeter"),
    ("ght", "no", "", "Glaucoma Hemifield Test: WNL, Borderline, ONL, GRS or AHS"),
    ("perimeter", "no", "", "maker or model, e.g. HFA (other makers are refused)"),
    ("td1 ... td54, pd1 ... pd54", "no", "dB", "the perimeter's total and pattern deviation maps"),
    ("tdp1 ... tdp54, pdp1 ... pdp54", "no", "p", "the perimeter's probability symbols: 0.005, 0.01, 0.02, 0.05 or 1"),
]


@role_required(*SUBJECT_ROLES)
def visual_field_csv_format(request: HttpRequest) -> HttpResponse:
    """The documented visual-field CSV format: columns, units and an example, with a template to download."""
    from trials.uploads.visual_field import N_POINTS

    return render(
        request,
        "trials/visual_field_csv.html",
        {"n_points": N_POINTS, "example": _vf_template().decode(), "columns": VF_CSV_COLUMNS},
    )


def _vf_template() -> bytes:
    from trials.uploads.pipeline import visual_field_csv_bytes
    from trials.uploads.visual_field import parse_visual_field_csv

    return visual_field_csv_bytes(parse_visual_field_csv(VF_TEMPLATE_SOURCE)[0])


@role_required(*SUBJECT_ROLES)
def visual_field_csv_template(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(_vf_template(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="visus-visual-field-template.csv"'
    return response


def case_page_extras(request: HttpRequest, case: Case) -> dict[str, Any]:
    """Sections higher apps add to the case page (diagnosis: inference jobs and predictions), through
    ``trials.hooks``: each panel's context, and the templates to include in order."""
    user = signed_in_user(request)
    context: dict[str, Any] = {}
    templates = []
    for panel in hooks.case_page_panels():
        context |= panel.context(user=user, case=case)
        templates.append(panel.template)
    return {**context, "case_panel_templates": templates}


FILE_VARIANTS = {"content", "preview", "thumbnail", "pd_plot"}


@role_required(*SUBJECT_ROLES)
def case_file(request: HttpRequest, pk: str, variant: str) -> HttpResponseBase:
    """A case file's bytes, only for people who may see the case (S3: a short-lived presigned URL)."""
    if variant not in FILE_VARIANTS:
        raise Http404("Unknown file variant.")
    case_file_obj = get_object_or_404(case_files_for(signed_in_user(request)), pk=pk)
    if variant == "pd_plot":
        name = case_file_obj.visual_field.pd_plot.name if hasattr(case_file_obj, "visual_field") else ""
    else:
        name = getattr(case_file_obj, variant).name
    if not name:
        raise Http404("This file has no such variant.")
    if variant == "content":
        content_type = case_file_obj.content_type
    else:
        content_type = "image/png" if name.endswith(".png") else "image/jpeg"
    download = f"{case_file_obj.case.subject.pseudonym}-{case_file_obj.pk.hex[:8]}.{name.rsplit('.', 1)[-1]}"
    return serve_private(name, content_type=content_type, download_name=download if variant == "content" else None)


@role_required(Role.COORDINATOR)
@require_POST
def case_rnfl(request: HttpRequest, pk: str) -> HttpResponse:
    case = get_object_or_404(cases_for(signed_in_user(request)), pk=pk)
    form = CaseRnflForm(request.POST)
    saved = form.is_valid() and run_service(
        form,
        lambda: services.case_record_rnfl(
            actor=signed_in_user(request),
            case=case,
            thickness_um=form.cleaned_data["thickness_um"],
            reason=form.cleaned_data["reason"],
        ),
    )
    return _back_to_case(request, pk, form, saved, "RNFL thickness saved.")


def form_error_texts(form: forms.Form) -> list[str]:
    """A form's errors as sentences for a message: each field's error after the field's label."""
    texts = [str(error) for error in form.non_field_errors()]
    for name, errors in form.errors.items():
        if name in form.fields:
            label = form[name].label
            texts += [f"{label}: {error}" for error in errors]
    return texts


def _back_to_case(request: HttpRequest, pk: str, form: forms.Form, saved: object, message: str) -> HttpResponse:
    """After a case form's POST: the success message, or each of the form's errors (named by their field), on the
    case page."""
    if saved:
        messages.success(request, message)
    else:
        for error in form_error_texts(form):
            messages.error(request, error)
    return redirect("trials:case-detail", pk=pk)


@role_required(Role.COORDINATOR)
@require_POST
def case_status(request: HttpRequest, pk: str) -> HttpResponse:
    case = get_object_or_404(cases_for(signed_in_user(request)), pk=pk)
    form = CaseStatusForm(request.POST)
    saved = form.is_valid() and run_service(
        form,
        lambda: services.case_set_status(
            actor=signed_in_user(request),
            case=case,
            status=form.cleaned_data["status"],
            reason=form.cleaned_data["reason"],
        ),
    )
    return _back_to_case(request, pk, form, saved, "Case status saved.")
