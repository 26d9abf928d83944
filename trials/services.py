"""Writes about trials, sites, subjects and cases. Each is atomic and writes its audit event."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from platform_core.accounts.models import Hospital, Role, User
from platform_core.accounts.selectors import user_has_role
from platform_core.audit.services import audit_chain_lock, audit_snapshot, audited_save, diff, snapshot
from platform_core.errors import ApplicationError
from trials import hooks
from trials.models import (
    RNFL_RANGE_UM,
    Case,
    CaseStatus,
    Modality,
    ReferenceSource,
    ReferenceStandard,
    SiteStatus,
    Subject,
    SubjectStatus,
    Trial,
    TrialSite,
    TrialStatus,
)
from trials.selectors import active_case_files, trial_roles
from trials.states import require_allowed
from trials.subject_checks import subject_fact_problems

TRIAL_FIELDS = (
    "slug",
    "protocol_number",
    "title",
    "subject_prefix",
    "modalities",
    "reading_form",
    "readers_per_case",
    "reading_design",
    "washout_days",
    "reference_rule",
    "inclusion_criteria",
    "exclusion_criteria",
    "vf_max_fixation_losses",
    "vf_max_false_positives",
    "vf_max_false_negatives",
)
VF_CUT_OFFS = {"vf_max_fixation_losses", "vf_max_false_positives", "vf_max_false_negatives"}
# Once recruiting starts, the protocol's design is fixed; these stay editable (with a reason; new cut-offs
# re-judge the stored visual fields).
EDITABLE_AFTER_DRAFT = {"title", "vf_max_fixation_losses", "vf_max_false_positives", "vf_max_false_negatives"}


def _require_manager(user: User, trial: Trial | None = None) -> None:
    if trial is None:
        allowed = user_has_role(user, Role.TRIAL_MANAGER)
    else:
        allowed = Role.TRIAL_MANAGER in trial_roles(user, trial)
    if not allowed:
        raise ApplicationError("Only a trial manager of this trial may do this.", code="forbidden", status=403)


@transaction.atomic
def trial_create(*, actor: User, **fields: Any) -> Trial:
    _require_manager(actor)
    unknown = set(fields) - set(TRIAL_FIELDS)
    if unknown:
        raise ValueError(f"Unknown trial fields: {sorted(unknown)}")
    trial = Trial(created_by=actor, status=TrialStatus.DRAFT, **fields)
    audited_save(trial, actor=actor, action="trial.create", trial_ref=trial.slug)
    return trial


@transaction.atomic
def trial_update(*, actor: User, trial: Trial, reason: str = "", **fields: Any) -> Trial:
    trial = Trial.objects.select_for_update(no_key=True).get(pk=trial.pk)
    _require_manager(actor, trial)
    unknown = set(fields) - set(TRIAL_FIELDS)
    if unknown:
        raise ValueError(f"Unknown trial fields: {sorted(unknown)}")
    audited_before = audit_snapshot(trial)
    before = snapshot(trial, fields.keys())
    for name, value in fields.items():
        setattr(trial, name, value)
    changes = diff(before, snapshot(trial, fields.keys()))
    if not changes:
        return trial
    if trial.status != TrialStatus.DRAFT:
        frozen = sorted(set(changes) - EDITABLE_AFTER_DRAFT)
        if frozen:
            raise ApplicationError(
                f"The protocol is fixed once the trial leaves draft; these cannot change now: {', '.join(frozen)}.",
                code="trial_design_fixed",
            )
        if not reason.strip():
            raise ValidationError({"reason": "Give a reason for changing a trial that is under way."})
    audited_save(trial, actor=actor, action="trial.update", before=audited_before, trial_ref=trial.slug, reason=reason)
    if set(changes) & VF_CUT_OFFS:
        from trials.vf_services import visual_field_rejudge  # local: vf_services imports file_services

        visual_field_rejudge(actor=actor, trial=trial, reason=reason or "reliability cut-offs changed")
    return trial


@transaction.atomic
def trial_transition(*, actor: User, trial: Trial, status: str, reason: str = "") -> Trial:
    trial = Trial.objects.select_for_update(no_key=True).get(pk=trial.pk)
    _require_manager(actor, trial)
    if status not in TrialStatus.values:
        raise ValidationError({"status": f"Unknown status {status!r}."})
    if not trial.can_transition_to(status):
        raise ApplicationError(
            f"A trial cannot go from {trial.get_status_display().lower()} to {TrialStatus(status).label.lower()}.",
            code="invalid_transition",
        )
    if status == TrialStatus.RECRUITING and not trial.sites.filter(status=SiteStatus.ACTIVE).exists():
        raise ApplicationError("Add at least one active site before recruiting starts.", code="no_sites")
    if trial.status == TrialStatus.DRAFT:
        manages_a_site = trial.sites.filter(
            hospital__memberships__user=actor,
            hospital__memberships__role=Role.TRIAL_MANAGER,
            hospital__memberships__is_active=True,
        ).exists()
        if not manages_a_site:  # the creator's draft rights end here; they would lose the trial at once
            raise ApplicationError(
                "You are a trial manager at none of this trial's sites, so you could not manage it once it leaves "
                "draft. Add a site at your hospital, or ask a manager at one of its sites to make this change.",
                code="no_managing_site",
            )
    if status == TrialStatus.CLOSED and not reason.strip():
        raise ValidationError({"reason": "Give a reason for closing the trial."})
    before = audit_snapshot(trial)
    trial.status = status
    audited_save(
        trial,
        actor=actor,
        action="trial.transition",
        before=before,
        update_fields=["status", "updated_at"],
        trial_ref=trial.slug,
        reason=reason,
    )
    return trial


@transaction.atomic
def trial_site_add(*, actor: User, trial: Trial, hospital: Hospital, enrolment_target: int) -> TrialSite:
    _require_manager(actor, trial)
    if trial.status == TrialStatus.CLOSED:
        raise ApplicationError("The trial is closed: no sites can be added.", code="trial_closed")
    require_allowed("site.add", trial)
    if TrialSite.objects.filter(trial=trial, hospital=hospital).exists():
        raise ApplicationError(f"{hospital.code} is already a site of this trial.", code="duplicate_site")
    site = TrialSite(trial=trial, hospital=hospital, enrolment_target=enrolment_target)
    audited_save(site, actor=actor, action="trial_site.create", trial_ref=trial.slug, hospital_code=hospital.code)
    return site


@transaction.atomic
def trial_site_update(
    *, actor: User, site: TrialSite, reason: str, enrolment_target: int | None = None, status: str | None = None
) -> TrialSite:
    site = (
        TrialSite.objects.select_for_update(no_key=True, of=("self",))
        .select_related("trial", "hospital")
        .get(pk=site.pk)
    )
    _require_manager(actor, site.trial)
    if site.trial.status == TrialStatus.CLOSED:  # as for adding a site: a closed trial's sites stay as they were
        raise ApplicationError("The trial is closed: its sites can no longer be changed.", code="trial_closed")
    require_allowed("site.change", site.trial)
    before = audit_snapshot(site)
    if enrolment_target is not None:
        site.enrolment_target = enrolment_target
    if status is not None:
        site.status = status
    if not diff(before, audit_snapshot(site)):
        return site
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for changing a site."})
    audited_save(
        site,
        actor=actor,
        action="trial_site.update",
        before=before,
        trial_ref=site.trial.slug,
        hospital_code=site.hospital.code,
        reason=reason,
    )
    return site


def store_age(age: int) -> str:
    """Whole years; 90 and over become "90+" (HIPAA Safe Harbor)."""
    if age < 0 or age > 130:
        raise ValidationError({"age": "Age must be between 0 and 130 years."})
    return "90+" if age >= 90 else str(age)


def check_eligibility(trial: Trial, answers: Mapping[str, Any]) -> dict[str, bool]:
    """All inclusion criteria answered yes and all exclusion criteria answered no, or a clear error."""
    recorded: dict[str, bool] = {}
    problems: list[str] = []
    for criterion in trial.inclusion_criteria:
        answer = answers.get(criterion)
        if answer is None:
            problems.append(f"Inclusion criterion not answered: {criterion}")
        elif answer is not True:
            problems.append(f"Inclusion criterion not met: {criterion}")
        recorded[criterion] = answer is True
    for criterion in trial.exclusion_criteria:
        answer = answers.get(criterion)
        if answer is None:
            problems.append(f"Exclusion criterion not answered: {criterion}")
        elif answer is not False:
            problems.append(f"Exclusion criterion applies: {criterion}")
        recorded[criterion] = answer is True
    unknown = sorted(set(answers) - set(trial.inclusion_criteria) - set(trial.exclusion_criteria))
    if unknown:
        problems.append(f"Answers to criteria this trial does not have: {', '.join(unknown)}")
    if problems:
        raise ApplicationError(
            "The subject is not eligible: " + "; ".join(problems) + ".",
            code="not_eligible",
            extra={"problems": problems},
        )
    return recorded


def _next_number(site: TrialSite) -> int:
    # NO KEY UPDATE: a case created at this site (its foreign key to the site, checked at commit) does not wait for
    # the numbering, which would wait for that change's audit chain lock: a deadlock.
    locked = TrialSite.objects.select_for_update(no_key=True).get(pk=site.pk)
    locked.last_subject_number += 1
    locked.save(update_fields=["last_subject_number"])
    return locked.last_subject_number


@transaction.atomic
def subject_enroll(
    *,
    actor: User,
    site: TrialSite,
    eligibility: Mapping[str, Any],
    consent_date: dt.date | None,
    consent_form_version: str,
    sex: str,
    age: int,
    diabetes_type: str,
    diabetes_duration_years: int | None = None,
    submission_token: str | None = None,
) -> Subject:
    """Enrol a subject at a site and issue the pseudonym.

    Refused, changing nothing, unless the actor coordinates the site, the trial is recruiting, the
    site is active, consent is recorded and the eligibility checklist holds. A repeated
    ``submission_token`` (double submit) is refused and names the subject already enrolled.
    """
    site = TrialSite.objects.select_related("trial", "hospital").get(pk=site.pk)
    trial = site.trial
    if not user_has_role(actor, Role.COORDINATOR, hospital=site.hospital):
        raise ApplicationError("Only a coordinator of this site may enrol subjects here.", code="forbidden", status=403)
    if submission_token:  # only after the permission check, and only at this site: nothing of another leaks
        # Lock the site first (as numbering does): a double submit racing this one has then either committed,
        # and is found here, or waits; without it the second insert failed full_clean's unique check (a 400).
        TrialSite.objects.select_for_update(no_key=True).filter(pk=site.pk).exists()
        existing = Subject.objects.filter(site=site, submission_token=submission_token).first()
        if existing is not None:
            raise ApplicationError(
                f"This enrolment was already submitted: subject {existing.pseudonym}. Nothing was changed.",
                code="duplicate_submission",
                status=409,
                extra={"subject": existing.pseudonym},
            )
    if trial.status != TrialStatus.RECRUITING:
        raise ApplicationError(
            f"Trial {trial.protocol_number} is {trial.get_status_display().lower()}: enrolment is only possible "
            "while it is recruiting.",
            code="trial_not_recruiting",
        )
    require_allowed("subject.enroll", trial)  # the state table agrees (checked above with its own message)
    if site.status != SiteStatus.ACTIVE:
        raise ApplicationError(
            f"Site {site.hospital.code} is {site.get_status_display().lower()}: enrolment is paused there.",
            code="site_not_active",
        )
    # Every problem with the record at once (consent, and the subject's facts against the answered checklist).
    errors: dict[str, list[str]] = {}
    if consent_date is None:
        errors["consent_date"] = ["Record the date the subject gave consent."]
    elif consent_date > timezone.localdate():
        errors["consent_date"] = ["The consent date cannot be in the future."]
    if not consent_form_version.strip():
        errors["consent_form_version"] = ["Record the version of the consent form signed."]
    errors |= subject_fact_problems(
        inclusion=list(trial.inclusion_criteria),
        exclusion=list(trial.exclusion_criteria),
        answers=eligibility,
        age=age,
        diabetes_type=diabetes_type,
        diabetes_duration_years=diabetes_duration_years,
    )
    if errors or consent_date is None:
        raise ValidationError(errors)
    recorded = check_eligibility(trial, eligibility)
    number = _next_number(site)
    subject = Subject(
        trial=trial,
        site=site,
        number=number,
        pseudonym=f"{trial.subject_prefix}-{site.hospital.code}-{number:04d}",
        enrolled_at=timezone.now(),
        enrolled_by=actor,
        consent_days_before_enrolment=(timezone.localdate() - consent_date).days,
        consent_form_version=consent_form_version.strip(),
        eligibility=recorded,
        sex=sex,
        age=store_age(age),
        diabetes_type=diabetes_type,
        diabetes_duration_years=diabetes_duration_years,
        submission_token=submission_token or None,
    )
    try:
        with transaction.atomic():
            audited_save(
                subject,
                actor=actor,
                action="subject.enroll",
                force_insert=True,
                trial_ref=trial.slug,
                hospital_code=site.hospital.code,
            )
    except IntegrityError:
        raise ApplicationError(
            "This enrolment was already submitted. Nothing was changed.", code="duplicate_submission", status=409
        ) from None
    return subject


def require_site_writer(actor: User | None, subject: Subject, *, doing: str = "change its subjects") -> None:
    """Coordinators of the subject's site may write. ``actor=None`` is a trusted server-side operation
    (a management command run by an operator), recorded in the audit trail without a user."""
    if actor is None:
        return
    if not user_has_role(actor, Role.COORDINATOR, hospital=subject.site.hospital):
        raise ApplicationError(f"Only a coordinator of this site may {doing}.", code="forbidden", status=403)


@transaction.atomic
def subject_withdraw(*, actor: User, subject: Subject, reason: str) -> Subject:
    """Flag a subject as withdrawn. Their data is kept (and stays in analyses the protocol allows)."""
    subject = (
        Subject.objects.select_for_update(no_key=True, of=("self",))
        .select_related("site__hospital", "trial")
        .get(pk=subject.pk)
    )
    require_site_writer(actor, subject)
    if not reason.strip():
        raise ValidationError({"reason": "Give the reason for the withdrawal."})
    if subject.is_withdrawn:
        raise ApplicationError(f"{subject.pseudonym} is already withdrawn.", code="already_withdrawn")
    require_allowed("subject.withdraw", subject.trial, subject)
    before = audit_snapshot(subject)
    subject.status = SubjectStatus.WITHDRAWN
    subject.withdrawn_at = timezone.now()
    subject.withdrawal_reason = reason.strip()
    audited_save(
        subject,
        actor=actor,
        action="subject.withdraw",
        before=before,
        update_fields=["status", "withdrawn_at", "withdrawal_reason", "updated_at"],
        trial_ref=subject.trial.slug,
        hospital_code=subject.site.hospital.code,
        reason=reason.strip(),
    )
    return subject


@transaction.atomic
def case_create(*, actor: User | None, subject: Subject, laterality: str, visit_day: int) -> Case:
    subject = Subject.objects.select_related("site__hospital", "trial").get(pk=subject.pk)
    require_site_writer(actor, subject)
    if subject.is_withdrawn:
        raise ApplicationError(f"{subject.pseudonym} is withdrawn: no new cases.", code="subject_withdrawn")
    if subject.trial.status == TrialStatus.CLOSED:
        raise ApplicationError("The trial is closed: no new cases.", code="trial_closed")
    require_allowed("case.create", subject.trial, subject)
    if Case.objects.filter(subject=subject, laterality=laterality, visit_day=visit_day).exists():
        raise ApplicationError(
            f"{subject.pseudonym} already has a case for {laterality} on day {visit_day}.",
            code="duplicate_case",
            status=409,
        )
    case = Case(subject=subject, trial=subject.trial, site=subject.site, laterality=laterality, visit_day=visit_day)
    try:
        with transaction.atomic():
            audited_save(
                case,
                actor=actor,
                action="case.create",
                force_insert=True,
                trial_ref=subject.trial.slug,
                hospital_code=subject.site.hospital.code,
            )
    except IntegrityError:
        raise ApplicationError(
            f"{subject.pseudonym} already has a case for {laterality} on day {visit_day}.",
            code="duplicate_case",
            status=409,
        ) from None
    return case


@transaction.atomic
def case_set_status(*, actor: User, case: Case, status: str, reason: str = "") -> Case:
    # FOR NO KEY UPDATE on the case and the rows joined to it (subject, site, hospital, trial): they stay locked
    # against other writers, but a change that only refers to one of them (enrolling a subject, assigning a
    # reader) does not wait. With FOR UPDATE that change's foreign-key check, run at its commit, would wait for
    # this lock while this transaction waits for the audit chain lock the other holds: a deadlock.
    case = (
        Case.objects.select_for_update(no_key=True)
        .select_related("subject__site__hospital", "subject__trial")
        .get(pk=case.pk)
    )
    require_site_writer(actor, case.subject)
    require_allowed("case.status", case.subject.trial, case.subject)
    if status not in CaseStatus.values:
        raise ValidationError({"status": f"Unknown case status {status!r}."})
    if status == case.status:
        raise ApplicationError(f"The case is already {case.get_status_display().lower()}.", code="no_change")
    if status == CaseStatus.EXCLUDED and not reason.strip():
        raise ValidationError({"reason": "Give the reason for excluding the case."})
    if case.status != CaseStatus.OPEN and not reason.strip():
        raise ValidationError({"reason": "Give a reason for reopening or changing a closed case."})
    if status == CaseStatus.COMPLETE and not active_case_files(case).exists():
        raise ApplicationError(
            "The case has no files, so it cannot be completed: upload what the trial expects first (or exclude the "
            "case with a reason).",
            code="case_empty",
        )
    before = audit_snapshot(case)
    case.status = status
    case.exclusion_reason = reason.strip() if status == CaseStatus.EXCLUDED else ""
    audited_save(
        case,
        actor=actor,
        action="case.status",
        before=before,
        update_fields=["status", "exclusion_reason", "updated_at"],
        trial_ref=case.subject.trial.slug,
        hospital_code=case.subject.site.hospital.code,
        reason=reason.strip(),
    )
    if status == CaseStatus.COMPLETE:
        # What higher apps do with a complete case (diagnosis queues inference), in this transaction.
        hooks.case_completed(case)
    return case


@transaction.atomic
def case_record_rnfl(*, actor: User, case: Case, thickness_um: float | None, reason: str = "") -> Case:
    """Record the OCT device's average RNFL thickness of an open case of a trial that collects OCT.

    Changing or clearing a recorded value needs a reason; every change is audited with old and new values.
    """
    case = (
        Case.objects.select_for_update(no_key=True)
        .select_related("subject__site__hospital", "subject__trial")
        .get(pk=case.pk)
    )
    require_site_writer(actor, case.subject)
    trial = case.subject.trial
    if Modality.OCT not in trial.modalities:
        raise ApplicationError(f"Trial {trial.protocol_number} does not collect OCT.", code="modality_not_in_trial")
    if trial.status == TrialStatus.CLOSED:
        raise ApplicationError("The trial is closed: no more measurements.", code="trial_closed")
    subject = case.subject
    if subject.is_withdrawn:
        raise ApplicationError(f"{subject.pseudonym} is withdrawn: no more measurements.", code="subject_withdrawn")
    require_allowed("case.rnfl", trial, subject)
    if case.status != CaseStatus.OPEN:
        raise ApplicationError(
            f"The case is {case.get_status_display().lower()}; reopen it before changing its measurements.",
            code="case_not_open",
        )
    if thickness_um is not None:
        low, high = RNFL_RANGE_UM
        if not math.isfinite(thickness_um) or not low <= thickness_um <= high:
            raise ValidationError(
                {"thickness_um": f"An average RNFL thickness is between {low:g} and {high:g} um; check the OCT report."}
            )
        thickness_um = round(float(thickness_um), 1)
    old = case.oct_rnfl_thickness_um
    if old == thickness_um:
        raise ApplicationError("That is already the recorded RNFL thickness.", code="no_change")
    if old is not None and not reason.strip():
        raise ValidationError({"reason": "Give a reason for changing or clearing a recorded measurement."})
    before = audit_snapshot(case)
    case.oct_rnfl_thickness_um = thickness_um
    audited_save(
        case,
        actor=actor,
        action="case.rnfl",
        before=before,
        update_fields=["oct_rnfl_thickness_um", "updated_at"],
        trial_ref=trial.slug,
        hospital_code=case.subject.site.hospital.code,
        reason=reason.strip(),
    )
    return case


@transaction.atomic
def reference_standard_record(
    *,
    actor: User | None,
    case: Case,
    source: str,
    icdr_grade: int | None = None,
    glaucoma: str = "",
    reason: str = "",
) -> ReferenceStandard:
    """Record (or amend, with a reason) the reference standard of a case. Only trial managers or trusted
    server-side imports (actor None) may do this."""
    case = Case.objects.select_related("subject__trial", "subject__site__hospital").get(pk=case.pk)
    trial = case.subject.trial
    if actor is not None:
        _require_manager(actor, trial)
    if icdr_grade is None and not glaucoma:
        raise ValidationError({"icdr_grade": "Give a DR grade, a glaucoma answer, or both."})
    # The audit chain's lock before the reference's row: reading records the majority here in a signing that wrote
    # its own event first, holding that lock already (read_sign, read_amend). Locking the row first, an import or
    # an adjudication held it (or the row it inserted) while waiting for the chain's lock, which the signing held
    # while waiting for the row: a deadlock. Taken before the lock check too, so that a reference lock signed
    # meanwhile waits for this change instead of committing between the check and the label.
    audit_chain_lock()
    if source == ReferenceSource.IMPORTED:
        locked = hooks.reference_locked(trial)
        if locked:
            raise ApplicationError(locked, code="reference_locked", status=409)
    # Only the reference's row (of self): the model's ordering joins its case, subject and trial, and locking the
    # trial's row under the chain's lock crossed every change that holds it while waiting for the chain's lock
    # (case_set_status, trial_update, read_next): a deadlock.
    existing = ReferenceStandard.objects.select_for_update(no_key=True, of=("self",)).filter(case=case).first()
    new_values = {"icdr_grade": icdr_grade, "glaucoma": glaucoma, "source": source}
    if existing is not None:
        before = audit_snapshot(existing)
        if not diff(snapshot(existing, new_values.keys()), new_values):
            return existing
        if not reason.strip():
            raise ValidationError({"reason": "Give a reason for amending a reference standard."})
        for name, value in new_values.items():
            setattr(existing, name, value)
        existing.recorded_by = actor
        reference, action = existing, "reference.amend"
    else:
        reference = ReferenceStandard(case=case, recorded_by=actor, **new_values)
        before, action = None, "reference.record"
    audited_save(
        reference,
        actor=actor,
        action=action,
        before=before,
        trial_ref=trial.slug,
        hospital_code=case.subject.site.hospital.code,
        reason=reason,
    )
    return reference
