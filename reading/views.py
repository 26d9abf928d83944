"""Pages of blind reading: the reader's worklist and reading page, the manager's set-up and progress, the
adjudication queue. Same services and selectors as the API; small local JS only (autosave, time on case)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from platform_core.accounts.decorators import role_required
from platform_core.accounts.models import Role, User
from platform_core.accounts.requests import signed_in_user
from platform_core.errors import ApplicationError
from platform_core.forms import refusal_on_form
from platform_core.storage import serve_private, stored_name
from reading import selectors, services, signing, workstation
from reading.forms import (
    AdjudicationForm,
    AmendForm,
    AssignForm,
    CalibrationForm,
    LockForm,
    ReadForm,
    ResetForm,
    SetupForm,
    SignForm,
    setup_initial_from_protocol,
)
from reading.models import Phase, Read, ReadStatus
from trials.models import Trial
from trials.selectors import trials_for
from trials.views import run_service

READER_FILE_VARIANTS = {"preview", "thumbnail", "pd_plot"}
SETUP_FORM_FIELDS = ("crossing", "readers_per_case", "aided_phase", "washout_days", "grade_gap", "stale_after_days")


@role_required(Role.READER)
def worklist(request: HttpRequest) -> HttpResponse:
    trials = []
    for trial in selectors.reading_trials_for(signed_in_user(request)).order_by("protocol_number"):
        trials.append(
            {
                "trial": trial,
                "progress": selectors.reader_progress(signed_in_user(request), trial),
                "adjudicates": selectors.is_panel_member(signed_in_user(request), trial),
            }
        )
    return render(request, "reading/worklist.html", {"trials": trials})


@role_required(Role.READER)
@require_POST
def read_next(request: HttpRequest, slug: str, phase: str) -> HttpResponse:
    trial = get_object_or_404(selectors.reading_trials_for(signed_in_user(request)), slug=slug)
    if phase not in Phase.values:
        raise Http404("Unknown phase.")
    try:
        read = services.read_next(reader=signed_in_user(request), trial=trial, phase=phase)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("reading:worklist")
    if read is None:
        opens = selectors.aided_phase_opens(signed_in_user(request), trial) if phase == Phase.AIDED else None
        if opens is not None:
            messages.info(
                request,
                f"The AI-aided phase opens for you on {opens:%Y-%m-%d} at {opens:%H:%M} UTC: a case is read with the "
                "AI only after the washout since you signed your unaided read of it, so that your two reads stay "
                "independent.",
            )
        else:
            messages.success(request, f"Nothing left to read in the {Phase(phase).label.lower()} phase.")
        return redirect("reading:worklist")
    return redirect("reading:read", pk=read.pk)


def _answer_errors_on_form(form: ReadForm, sign_form: SignForm, exc: ValidationError) -> bool:
    """Put a refused signature's errors where the reader fixes them: an answer's or a confidence's on its field
    of the reading form (the service names confidences ``confidence:KEY``, the form ``c_KEY``), the rest on the
    signature. True when any landed on the reading form."""
    on_form = False
    if not hasattr(exc, "error_dict"):
        refusal_on_form(sign_form, exc)
        return False
    for key, errors in exc.message_dict.items():
        field = f"c_{key.split(':', 1)[1]}" if key.startswith("confidence:") else key
        for error in errors:
            if field in form.fields:
                form.add_error(field, error)
                on_form = True
            else:
                sign_form.add_error(field if field in sign_form.fields else None, error)
    return on_form


@role_required(Role.READER)
@require_http_methods(["GET", "POST"])
def read_page(request: HttpRequest, pk: str) -> HttpResponse:
    read = get_object_or_404(selectors.reads_of(signed_in_user(request)), pk=pk)
    trial = read.assignment.trial
    form = ReadForm(request.POST or None, questions=trial.reading_form, initial=ReadForm.initial_for(read))
    sign_form = SignForm(request.POST if "sign" in request.POST else None, identity=signing.identity_required(request))
    if request.method == "POST" and not read.is_signed and form.is_valid():
        saved = run_service(
            form,
            lambda: services.read_draft_save(
                reader=signed_in_user(request),
                read=read,
                version=form.cleaned_data["version"],
                answers=form.answers(),
                confidences=form.confidences(),
                seconds=form.cleaned_data.get("seconds") or 0,
            ),
        )
        if saved is not None and "sign" in request.POST:
            answers_refused = False
            if sign_form.is_valid():
                signed = None
                try:
                    signed = services.read_sign(
                        read=saved,
                        signer=signed_in_user(request),
                        password=sign_form.cleaned_data["password"],
                        meaning=sign_form.cleaned_data["meaning"],
                        version=saved.version,
                        username=sign_form.username(),
                    )
                except ValidationError as exc:
                    answers_refused = _answer_errors_on_form(form, sign_form, exc)
                except ApplicationError as exc:
                    refusal_on_form(sign_form, exc)
                if signed is not None:
                    signing.signed(request)
                    messages.success(request, f"Case {signed.number} signed.")
                    return _next_or_worklist(request, signed)
            read = saved
            if not answers_refused:  # keep the bound form (and its field errors) when the answers were refused
                form = ReadForm(questions=trial.reading_form, initial=ReadForm.initial_for(read))
        elif saved is not None:
            messages.success(request, "Draft saved.")
            return redirect("reading:read", pk=read.pk)
    elif request.method == "POST" and read.is_signed:
        # A second submit, or a form left open in another tab: nothing changes, and the reader is told why.
        messages.error(request, f"Case {read.number} is already signed and locked: nothing was changed.")
        return redirect("reading:read", pk=read.pk)
    return render(
        request,
        "reading/read.html",
        {
            "read": read,
            "trial": trial,
            "form": form,
            "sign_form": sign_form,
            **workstation.read_page_context(read, form),  # view, ai_outputs and the workstation's data
        },
    )


def _next_or_worklist(request: HttpRequest, read: Read) -> HttpResponse:
    """After signing, straight on to the reader's next case in the phase (the worklist when none is left)."""
    try:
        following = services.read_next(reader=signed_in_user(request), trial=read.assignment.trial, phase=read.phase)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        following = None
    return redirect("reading:read", pk=following.pk) if following else redirect("reading:worklist")


@role_required(Role.READER)
def read_file(request: HttpRequest, pk: str, file_pk: str, variant: str) -> HttpResponseBase:
    """An image of the case being read, under the read's own URL (no pseudonym in any name it sends)."""
    if variant not in READER_FILE_VARIANTS and variant not in workstation.VIEWER_VARIANTS:
        raise Http404("Unknown file variant.")
    read = get_object_or_404(selectors.reads_of(signed_in_user(request)), pk=pk)
    case_file = get_object_or_404(selectors.read_case_files_qs(read), pk=file_pk)
    if variant in workstation.VIEWER_VARIANTS:
        return workstation.viewer_image(case_file, variant)
    if variant == "pd_plot":
        name = case_file.visual_field.pd_plot.name if hasattr(case_file, "visual_field") else ""
    else:
        name = getattr(case_file, variant).name
    if not name:
        raise Http404("This file has no such variant.")
    return serve_private(name, content_type="image/png" if name.endswith(".png") else "image/jpeg")


@role_required(Role.READER)
def read_overlay(request: HttpRequest, pk: str, prediction_pk: str) -> HttpResponseBase:
    """The AI attention overlay, inside the reader's own AI-aided read of the case only."""
    read = get_object_or_404(selectors.reads_of(signed_in_user(request)), pk=pk)
    prediction = next((p for p in selectors.read_ai_outputs(read) if str(p.pk) == str(prediction_pk)), None)
    if prediction is None or not prediction.attention_overlay:
        raise Http404("No such AI output for this read.")
    return serve_private(prediction.attention_overlay.name, content_type="image/png")


@role_required(Role.TRIAL_MANAGER, Role.MONITOR, Role.STATISTICIAN)
@require_http_methods(["GET", "POST"])
def manage(request: HttpRequest, slug: str) -> HttpResponse:
    trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
    if not selectors.may_oversee_reading(signed_in_user(request), trial):
        raise PermissionDenied("Only the trial's managers, monitors and statisticians see reading progress.")
    can_manage = selectors.may_manage_reading(signed_in_user(request), trial)
    setup = selectors.setup_of(trial)
    initial = {f: getattr(setup, f) for f in SETUP_FORM_FIELDS} if setup else setup_initial_from_protocol(trial)
    setup_form = SetupForm(request.POST if "setup" in request.POST else None, initial=initial)
    assign_form = AssignForm(request.POST if "assign" in request.POST else None)
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("Only the trial's managers change its reading set-up.")
        if "setup" in request.POST and setup_form.is_valid():
            if run_service(
                setup_form,
                lambda: services.reading_setup_set(
                    actor=signed_in_user(request), trial=trial, **setup_form.cleaned_data
                ),
            ):
                messages.success(request, "Reading set-up saved.")
                return redirect("reading:manage", slug=slug)
        if "assign" in request.POST and assign_form.is_valid():
            reader = User.objects.filter(email__iexact=assign_form.cleaned_data["reader"]).first()
            if reader is None:
                assign_form.add_error("reader", "No user has this email address.")
            elif run_service(
                assign_form,
                lambda: services.reader_assign(
                    actor=signed_in_user(request),
                    trial=trial,
                    reader=reader,
                    phase=assign_form.cleaned_data["phase"],
                    group=assign_form.cleaned_data["group"],
                ),
            ):
                messages.success(request, "Reader assigned.")
                return redirect("reading:manage", slug=slug)
    rows = selectors.progress_table(trial)
    return render(
        request,
        "reading/manage.html",
        {
            "trial": trial,
            "setup": setup,
            "can_manage": can_manage,
            "setup_form": setup_form,
            "assign_form": assign_form,
            "rows": rows,
            "groups": selectors.progress_by_group(rows),
            "open_adjudications": selectors.open_adjudication_count(trial),
            "calibration": selectors.calibration_agreement(trial),
        },
    )


@role_required(Role.READER)
@require_http_methods(["GET", "POST"])
def adjudication_queue(request: HttpRequest, slug: str) -> HttpResponse:
    trial = get_object_or_404(selectors.reading_trials_for(signed_in_user(request)), slug=slug)
    if not selectors.is_panel_member(signed_in_user(request), trial):
        raise PermissionDenied("Only the trial's adjudication panel sees the adjudication queue.")
    queue = list(selectors.adjudication_queue(signed_in_user(request), trial))
    identity = signing.identity_required(request)
    forms = {
        a.pk: AdjudicationForm(initial={"version": a.version, **a.answers}, prefix=str(a.pk), identity=identity)
        for a in queue
    }
    if request.method == "POST":
        target = next((a for a in queue if str(a.pk) == request.POST.get("adjudication")), None)
        if target is None:
            raise Http404("No such adjudication in your queue.")
        form = AdjudicationForm(request.POST, prefix=str(target.pk), identity=identity)
        forms[target.pk] = form
        if form.is_valid():
            answers = {k: form.cleaned_data[k] for k in ("icdr_grade", "glaucoma") if form.cleaned_data[k]}
            if run_service(
                form,
                lambda: services.adjudication_sign(
                    adjudication=target,
                    signer=signed_in_user(request),
                    password=form.cleaned_data["password"],
                    meaning=form.cleaned_data["meaning"],
                    answers=answers,
                    version=form.cleaned_data["version"],
                    reason=form.cleaned_data["reason"],
                    username=form.username(),
                ),
            ):
                signing.signed(request)
                messages.success(request, "Adjudication signed: the reference standard is recorded.")
                return redirect("reading:adjudication", slug=slug)
    items = []
    for adjudication in queue:
        reads = [
            {
                "read": r,
                "group": r.assignment.group.replace("_", " ").capitalize(),
                "answers": selectors.labelled_answers(r.answers, r.confidences),
            }
            for r in getattr(adjudication.case, "prior_reads", [])  # prefetched by the selector
        ]
        files = getattr(adjudication.case, "preview_files", [])  # prefetched by the selector
        items.append({"adjudication": adjudication, "form": forms[adjudication.pk], "reads": reads, "files": files})
    return render(request, "reading/adjudication.html", {"trial": trial, "items": items})


@role_required(Role.READER)
def adjudication_file(request: HttpRequest, pk: str, file_pk: str) -> HttpResponseBase:
    """A preview of an adjudicated case's file, for the trial's panel (who see the prior reads anyway)."""
    case_file = get_object_or_404(selectors.adjudication_files(signed_in_user(request), pk), pk=file_pk)
    name = stored_name(case_file.preview) if case_file.preview else ""
    if not name:
        raise Http404("This file has no preview.")
    return serve_private(name, content_type="image/png" if name.endswith(".png") else "image/jpeg")


# --- Reader: their signed reads and amendments ------------------------------------------------------


@role_required(Role.READER)
def signed_reads(request: HttpRequest, slug: str) -> HttpResponse:
    """The reader's own signed reads of a trial (by their case numbers), each with a link to amend it."""
    trial = get_object_or_404(selectors.reading_trials_for(signed_in_user(request)), slug=slug)
    reads = (
        selectors.reads_of(signed_in_user(request))
        .filter(assignment__trial=trial, status=ReadStatus.SIGNED)
        .order_by("phase", "number")
    )
    return render(request, "reading/signed_reads.html", {"trial": trial, "reads": reads})


@role_required(Role.READER)
@require_http_methods(["GET", "POST"])
def read_amend_page(request: HttpRequest, pk: str) -> HttpResponse:
    """Amend the reader's own signed read: new answers, a reason, and a new signature (``services.read_amend``)."""
    read = get_object_or_404(selectors.reads_of(signed_in_user(request)), pk=pk)
    if not read.is_signed:
        messages.error(request, f"Case {read.number} is not signed yet: change the draft instead.")
        return redirect("reading:read", pk=read.pk)
    trial = read.assignment.trial
    form = AmendForm(
        request.POST or None,
        questions=trial.reading_form,
        initial=ReadForm.initial_for(read),
        identity=signing.identity_required(request),
    )
    if request.method == "POST" and form.is_valid():
        amended = run_service(
            form,
            lambda: services.read_amend(
                read=read,
                signer=signed_in_user(request),
                password=form.cleaned_data["password"],
                meaning=form.cleaned_data["meaning"],
                reason=form.cleaned_data["reason"],
                version=form.cleaned_data["version"],
                answers=form.answers(),
                confidences=form.confidences(),
                username=form.username(),
            ),
        )
        if amended is not None:
            signing.signed(request)
            messages.success(request, f"Case {amended.number} amended and signed again.")
            return redirect("reading:signed-reads", slug=trial.slug)
    return render(request, "reading/amend.html", {"read": read, "trial": trial, "form": form})


# --- Manager: reset, calibration, reference standard -------------------------------------------------


def _managed_trial(request: HttpRequest, slug: str) -> Trial:
    trial = get_object_or_404(trials_for(signed_in_user(request)), slug=slug)
    if not selectors.may_manage_reading(signed_in_user(request), trial):
        raise PermissionDenied("Only the trial's managers do this.")
    return trial


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def reset_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The readers' unsigned reads (no answers shown), each with a reset that needs a reason (audited)."""
    trial = _managed_trial(request, slug)
    drafts = selectors.unsigned_reads(trial)
    form = ResetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        read = get_object_or_404(drafts, pk=form.cleaned_data["read"])
        if run_service(
            form,
            lambda: (
                services.read_reset(actor=signed_in_user(request), read=read, reason=form.cleaned_data["reason"])
                or True
            ),
        ):
            messages.success(request, f"The unsigned case {read.number} of {read.reader} was reset.")
            return redirect("reading:reset", slug=slug)
    return render(request, "reading/reset.html", {"trial": trial, "drafts": drafts, "form": form})


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def calibration_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Mark calibration cases with known answers; per-reader agreement on them by week (reader drift)."""
    trial = _managed_trial(request, slug)
    form = CalibrationForm(
        request.POST or None, cases=selectors.calibration_candidates(trial), questions=trial.reading_form
    )
    if request.method == "POST" and form.is_valid():
        if run_service(
            form,
            lambda: services.calibration_case_mark(
                actor=signed_in_user(request), case=form.cleaned_data["case"], known_answers=form.known_answers()
            ),
        ):
            messages.success(request, "Calibration case marked: readers cannot tell it apart from the others.")
            return redirect("reading:calibration", slug=slug)
    return render(
        request,
        "reading/calibration.html",
        {
            "trial": trial,
            "form": form,
            "cases": selectors.calibration_cases(trial),
            "drift": selectors.calibration_drift(trial),
        },
    )


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def reference_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The trial's reference-standard rule and counts, and the signed lock (password and meaning)."""
    trial = _managed_trial(request, slug)
    setup = selectors.setup_of(trial)
    form = LockForm(request.POST or None, identity=signing.identity_required(request))
    if request.method == "POST" and form.is_valid():
        if run_service(
            form,
            lambda: services.reference_lock(
                actor=signed_in_user(request),
                trial=trial,
                password=form.cleaned_data["password"],
                meaning=form.cleaned_data["meaning"],
                username=form.username(),
            ),
        ):
            signing.signed(request)
            messages.success(request, "The reference standard is locked.")
            return redirect("reading:reference", slug=slug)
    return render(
        request,
        "reading/reference.html",
        {
            "trial": trial,
            "setup": setup,
            "form": form,
            "summary": selectors.reference_summary(trial),
            "open_adjudications": selectors.open_adjudication_count(trial),
        },
    )
