"""Writes of blind reading. Each checks who may act, validates, and writes its audit event in the same
transaction. Signing services check the password first, outside the write's transaction, so that a wrong
password stays counted towards the account lock-out (as ``user_password_change`` does)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from platform_core import limits
from platform_core.accounts.models import Role, User
from platform_core.accounts.services import (
    LOCKED_MESSAGE,
    locked_minutes,
    login_attempt_begin,
    login_attempt_succeeded,
    login_failure_record,
)
from platform_core.audit.services import (
    audit_chain_lock,
    audit_record,
    audit_snapshot,
    audited_save,
    diff,
    snapshot,
)
from platform_core.errors import ApplicationError
from reading import clock, queue
from reading.forms_core import check_answers, discordance, majority
from reading.models import (
    Adjudication,
    AdjudicationStatus,
    CalibrationCase,
    Crossing,
    LesionMark,
    PanelMember,
    Phase,
    Read,
    ReaderAssignment,
    ReadingSetup,
    ReadStatus,
)
from reading.queue import ReaderOrder  # noqa: F401  # the reader's order, named here as before
from trials.models import (
    Case,
    CaseFile,
    CaseStatus,
    ReferenceRule,
    ReferenceSource,
    ReferenceStandard,
    SubjectStatus,
    Trial,
    TrialSite,
    TrialStatus,
)
from trials.reading_form import CATALOGUE
from trials.selectors import trial_roles
from trials.services import reference_standard_record

# The meanings a signature may carry (21 CFR 11.50: the meaning is recorded with the signature).
MEANING_READ = "I confirm this read"
MEANING_AMEND = "I confirm this amended read"
MEANING_ADJUDICATE = "I confirm this adjudication as the reference standard"
MEANING_LOCK = "I lock the reference standard of this trial"
MEANINGS = {
    "read": (MEANING_READ,),
    "amend": (MEANING_AMEND, MEANING_READ),
    "adjudicate": (MEANING_ADJUDICATE,),
    "lock": (MEANING_LOCK,),
}
SETUP_FIELDS = (
    "crossing",
    "readers_per_case",
    "aided_phase",
    "washout_days",
    "extra_groups",
    "grade_gap",
    "stale_after_days",
)
MAX_SECONDS_PER_SAVE = 3600  # time on case sent with one save; more is a tab left open, not reading


def _trial_ref(trial: Trial) -> str:
    return trial.slug


def _require_manager(user: User, trial: Trial) -> None:
    roles = trial_roles(user, trial)
    if Role.TRIAL_MANAGER not in roles:
        raise ApplicationError("Only a trial manager of this trial may do this.", code="forbidden", status=403)
    if Role.READER in roles:  # the set-up, calibration answers and reference would unblind them
        raise ApplicationError(
            "You also read cases of this trial: another trial manager manages its reading (blind reading).",
            code="forbidden",
            status=403,
        )


def _require_open_for_reading(trial: Trial) -> None:
    if trial.status == TrialStatus.CLOSED:
        raise ApplicationError("This trial is closed: it accepts no reads.", code="trial_closed", status=409)
    if trial.status != TrialStatus.READING:
        raise ApplicationError(
            "This trial is not in its reading period yet: reads start when its manager moves it to reading.",
            code="not_reading",
            status=409,
        )


def _require_reason(reason: str, doing: str) -> str:
    if not reason.strip():
        raise ValidationError({"reason": f"Give a reason for {doing}."})
    return reason.strip()


def _require_meaning(meaning: str, kind: str) -> str:
    if meaning not in MEANINGS[kind]:
        raise ValidationError({"meaning": f"Choose the meaning of your signature: {' / '.join(MEANINGS[kind])}."})
    return meaning


def signature_verify(*, user: User, password: str, username: str | None = None) -> None:
    """Check a re-entered password for an e-signature. A wrong one counts like a failed sign-in (and can lock
    the account); the count is committed even though the signing is refused. Never call inside a transaction
    that the refusal rolls back. ``username``: the first signing of a session gives the full credentials
    (21 CFR 11.200(a)(1)(i)); the caller passes what was typed, and a wrong one counts like a wrong password.
    None: the session already signed once, so the password alone is asked."""
    attempt = login_attempt_begin(user=user)
    if attempt is None:
        raise ApplicationError(LOCKED_MESSAGE % {"minutes": locked_minutes(user)}, code="locked", status=403)
    if username is not None and username.strip().lower() != user.email.lower():
        login_failure_record(user=user, attempt=attempt)
        raise ValidationError(
            {"username": "This is not the e-mail address of the signed-in account: nothing was signed."}
        )
    if not password or not user.check_password(password):
        login_failure_record(user=user, attempt=attempt)
        raise ValidationError({"password": "The password is not correct: nothing was signed."})
    login_attempt_succeeded(user=user)


def setup_for(trial: Trial) -> ReadingSetup:
    setup = ReadingSetup.objects.filter(trial=trial).first()
    if setup is None:
        raise ApplicationError("This trial has no reading set-up yet.", code="no_setup", status=409)
    return setup


# --- Set-up ---------------------------------------------------------------------------------------


@transaction.atomic
def reading_setup_set(*, actor: User, trial: Trial, **fields: Any) -> ReadingSetup:
    """Create or change a trial's reading design. Crossing and phases are fixed once a read exists."""
    _require_manager(actor, trial)
    unknown = set(fields) - set(SETUP_FIELDS)
    if unknown:
        raise ValidationError({"__all__": f"Unknown reading set-up fields: {', '.join(sorted(unknown))}."})
    if trial.status == TrialStatus.CLOSED:
        raise ApplicationError("This trial is closed.", code="trial_closed", status=409)
    # Only the set-up's row (no ordering, of self): the model's ordering joins the trial, and a lock without ``of``
    # took the trial's row too, crossing every change that holds it while waiting for the audit chain's lock.
    setup = ReadingSetup.objects.select_for_update(no_key=True, of=("self",)).filter(trial=trial).order_by().first()
    before = snapshot(setup, SETUP_FIELDS) if setup else None
    before_audit = audit_snapshot(setup) if setup else None
    setup = setup or ReadingSetup(trial=trial)
    for name, value in fields.items():
        setattr(setup, name, value)
    setup.full_clean()
    changes = diff(before, snapshot(setup, SETUP_FIELDS))
    if not changes:
        return setup
    if before and Read.objects.filter(case__subject__trial=trial).exists():
        fixed = {"crossing", "aided_phase", "washout_days"} & set(changes)
        if fixed:
            raise ValidationError({next(iter(fixed)): "Reads have started: the design can no longer change."})
    audited_save(setup, actor=actor, action="reading.setup_set", before=before_audit, trial_ref=_trial_ref(trial))
    return setup


def _reader_of_trial(user: User, trial: Trial) -> bool:
    return TrialSite.objects.filter(
        trial=trial,
        hospital__memberships__user=user,
        hospital__memberships__role=Role.READER,
        hospital__memberships__is_active=True,
    ).exists()


@transaction.atomic
def reader_assign(*, actor: User, trial: Trial, reader: User, phase: str, group: str) -> ReaderAssignment:
    """Assign a reader (who reads at one of the trial's sites) to a phase, with an experience group. Each
    assignment gets its own random seed: the reader's case order in that phase."""
    _require_manager(actor, trial)
    setup = setup_for(trial)
    if phase not in setup.phases:
        raise ValidationError({"phase": f"This trial's phases are: {', '.join(setup.phases)}."})
    if group not in setup.groups:
        raise ValidationError({"group": f"Choose one of the trial's experience groups: {', '.join(setup.groups)}."})
    if not _reader_of_trial(reader, trial):
        raise ValidationError({"reader": "This person holds no reader role at a site of this trial."})
    # Only the assignment's row, as _own_assignment: the model's ordering joins the trial and the reader.
    assignment = (
        ReaderAssignment.objects.select_for_update(no_key=True, of=("self",))
        .filter(trial=trial, reader=reader, phase=phase)
        .order_by()
        .first()
    )
    before = None
    if assignment is not None:
        before = audit_snapshot(assignment)
        assignment.group, assignment.is_active = group, True
        if not diff(before, audit_snapshot(assignment)):
            return assignment
    else:
        assignment = ReaderAssignment(trial=trial, reader=reader, phase=phase, group=group, seed=secrets.randbits(62))
    audited_save(assignment, actor=actor, action="reading.reader_assign", before=before, trial_ref=trial.slug)
    k = setup.readers_per_case if setup.crossing == Crossing.K_PER_CASE else None
    queue.queue_fill(assignment, readers_per_case=k)  # the reader's order, stored (again after a re-activation)
    return assignment


@transaction.atomic
def reader_unassign(*, actor: User, assignment: ReaderAssignment, reason: str) -> ReaderAssignment:
    _require_manager(actor, assignment.trial)
    reason = _require_reason(reason, "ending a reader's assignment")
    if not assignment.is_active:
        return assignment
    assignment.is_active = False
    assignment.save(update_fields=["is_active", "updated_at"])
    audit_record(
        actor=actor,
        action="reading.reader_unassign",
        obj=assignment,
        trial_ref=assignment.trial.slug,
        changes={"is_active": [True, False]},
        reason=reason,
    )
    return assignment


@transaction.atomic
def panel_member_add(*, actor: User, trial: Trial, user: User) -> PanelMember:
    _require_manager(actor, trial)
    if not _reader_of_trial(user, trial):
        raise ValidationError({"user": "Adjudicators hold a reader role at a site of this trial."})
    member, created = PanelMember.objects.get_or_create(trial=trial, user=user)
    if not created and member.is_active:
        return member
    member.is_active = True
    member.save()
    audit_record(
        actor=actor, action="reading.panel_add", obj=member, trial_ref=trial.slug, changes={"user": [None, user.email]}
    )
    return member


@transaction.atomic
def calibration_case_mark(*, actor: User, case: Case, known_answers: dict[str, Any]) -> CalibrationCase:
    """Mark a case with a known answer: served among the others, indistinguishable to readers, and kept out
    of the trial's analyses."""
    trial = case.subject.trial
    _require_manager(actor, trial)
    errors = check_answers(trial.reading_form, known_answers, {}, complete=False)
    if errors or not known_answers:
        raise ValidationError(errors or {"known_answers": "Give the known answer of at least one question."})
    calibration, created = CalibrationCase.objects.get_or_create(case=case, defaults={"known_answers": known_answers})
    if not created:
        raise ValidationError({"case": "This case is already a calibration case."})
    audit_record(
        actor=actor,
        action="reading.calibration_mark",
        obj=calibration,
        trial_ref=trial.slug,
        changes=diff(None, {"known_answers": known_answers}),
    )
    return calibration


# --- Reading --------------------------------------------------------------------------------------


def _own_assignment(reader: User, trial: Trial, phase: str) -> ReaderAssignment:
    # NO KEY UPDATE, as every row lock in Visus that is not followed by a delete: a change that holds the audit
    # chain's lock and queued a case for this assignment checks its foreign key (FOR KEY SHARE) at commit; with
    # FOR UPDATE here, read_next held that check up while it waited for the audit chain's lock: a deadlock.
    # Only this row (no ordering, ``of=self``): the model's ordering joins the trial and the reader, and a lock
    # without ``of`` takes their rows too, so every reader of the trial waited here for the one before them.
    assignment = (
        ReaderAssignment.objects.select_for_update(no_key=True, of=("self",))
        .filter(trial=trial, reader=reader, phase=phase, is_active=True)
        .order_by()
        .first()
    )
    if assignment is None:
        raise ApplicationError("You are not assigned to read this trial in this phase.", code="forbidden", status=403)
    return assignment


def servable_cases(*, assignment: ReaderAssignment, setup: ReadingSetup) -> Any:
    """The cases this reader may be served next in this phase, in their own order (one query): complete, not
    excluded, of enrolled subjects, not yet served to them in the phase; with k readers per case, not yet
    opened by k readers; in the aided phase, cases whose unaided read they signed at least the washout ago.
    The order hashes the reader's seed with the case id (``ReaderOrder``): stable across visits and different
    between readers.

    Walked from the assignment's queue (``QueuedCase``, the cases that may come up, by rank): taking the first
    row costs the queued cases skipped before it, each checked by index, not a hash of every case of the trial.
    The reader's order is a random permutation, so the cases skipped are as many as one expects to draw before a
    servable one (1 / the servable share of the queue)."""
    reads_in_phase = Read.objects.filter(case=OuterRef("pk"), phase=assignment.phase)
    qs = Case.objects.filter(
        queued__assignment=assignment, status=CaseStatus.COMPLETE, subject__status=SubjectStatus.ENROLLED
    ).exclude(Exists(reads_in_phase.filter(reader_id=assignment.reader_id)))
    if setup.crossing == Crossing.K_PER_CASE:
        opened = reads_in_phase.order_by().values("case").annotate(n=Count("pk")).values("n")
        qs = qs.annotate(phase_reads=Coalesce(Subquery(opened), 0)).filter(
            Q(phase_reads__lt=setup.readers_per_case) | Q(calibration__isnull=False)
        )
    if assignment.phase == Phase.AIDED:
        washed_out = clock.now() - timedelta(days=setup.washout_days)
        qs = qs.filter(
            Exists(
                Read.objects.filter(
                    case=OuterRef("pk"),
                    phase=Phase.UNAIDED,
                    reader_id=assignment.reader_id,
                    status=ReadStatus.SIGNED,
                    signed_at__lte=washed_out,
                )
            )
        )
    return qs.order_by("queued__rank")


@transaction.atomic
def read_next(*, reader: User, trial: Trial, phase: str) -> Read | None:
    """The reader's current case in this phase: the unsigned read where they stopped, else the next case in
    their order (opened as a draft read with their next case number); None when nothing is left to read.
    Idempotent: calling it again (another tab, a double click) returns the same draft."""
    _require_open_for_reading(trial)
    assignment = _own_assignment(reader, trial, phase)  # row lock: one reader's calls are served in turn
    current = Read.objects.filter(assignment=assignment, status=ReadStatus.DRAFT).order_by("number").first()
    if current is not None:
        return current
    setup = setup_for(trial)
    case = servable_cases(assignment=assignment, setup=setup).only("pk").first()
    if case is None:
        return None
    last = Read.objects.filter(assignment=assignment).order_by("-number").values_list("number", flat=True).first()
    unaided = None
    if phase == Phase.AIDED:
        unaided = Read.objects.filter(reader=reader, case=case, phase=Phase.UNAIDED).only("pk").first()
    read = Read(
        assignment=assignment,
        reader=reader,
        case=case,
        phase=phase,
        number=(last or 0) + 1,
        unaided_read=unaided,
    )
    # The foreign keys are rows this transaction just read (the assignment under its lock, the case from the
    # walk): not looked up again.
    read.full_clean(
        exclude=["assignment", "reader", "case", "unaided_read"], validate_unique=False, validate_constraints=False
    )
    try:
        with transaction.atomic():
            read.save(force_insert=True)
    except IntegrityError:
        raise ApplicationError(
            "This case was just opened elsewhere; ask for the next case again.", code="conflict", status=409
        ) from None
    queue.queue_take(read, readers_per_case=setup.readers_per_case if setup.crossing == Crossing.K_PER_CASE else None)
    # An update, not a save: the time is no input of the dashboard, whose version the read's insert already bumps
    # (evaluation.signals), so the assignment's save signal would only bump it a second time.
    now = timezone.now()
    ReaderAssignment.objects.filter(pk=assignment.pk).update(last_read_at=now, updated_at=now)
    assignment.last_read_at = assignment.updated_at = now
    audit_record(
        actor=reader,
        action="read.open",
        obj=read,
        trial_ref=trial.slug,
        changes={"case": [None, str(case.pk)], "phase": [None, phase], "number": [None, read.number]},
    )
    return read


def _lock_own_draft(reader: User, read: Read, version: int | None) -> Read:
    # NO KEY UPDATE, not UPDATE, on the read, case, subject and trial: see trials.services.case_set_status.
    locked = (
        Read.objects.select_for_update(no_key=True, of=("self",)).select_related("case__subject__trial").get(pk=read.pk)
    )
    if locked.reader_id != reader.pk:
        raise ApplicationError("This is not your read.", code="forbidden", status=403)
    if locked.is_signed:
        raise ApplicationError(
            "This read is signed and locked: it cannot change (amend it with a reason instead).",
            code="signed",
            status=409,
        )
    if version is not None and version != locked.version:
        raise ApplicationError(
            "This read changed since you opened it (another tab or a second submit); reload it.",
            code="stale",
            status=409,
            extra={"version": locked.version},
        )
    return locked


READ_FIELDS = ("answers", "confidences", "seconds_on_case")


@transaction.atomic
def read_draft_save(
    *,
    reader: User,
    read: Read,
    version: int,
    answers: dict[str, Any],
    confidences: dict[str, Any],
    seconds: int = 0,
) -> Read:
    """Save a draft (autosave). ``version`` is the one the form was loaded with: a stale form is refused.
    ``seconds`` is the time on case since the last save (added, at most an hour per save)."""
    read = _lock_own_draft(reader, read, version)
    trial = read.case.subject.trial
    _require_open_for_reading(trial)
    errors = check_answers(trial.reading_form, answers, confidences, complete=False)
    if errors:
        raise ValidationError(errors)
    if not isinstance(seconds, int) or seconds < 0:
        raise ValidationError({"seconds": "Time on case is a whole number of seconds, 0 or more."})
    before = audit_snapshot(read)
    read.answers, read.confidences = dict(answers), dict(confidences)
    read.seconds_on_case += min(seconds, MAX_SECONDS_PER_SAVE)
    if not diff(before, audit_snapshot(read)):
        return read
    read.version += 1
    audited_save(
        read,
        actor=reader,
        action="read.draft_save",
        before=before,
        update_fields=[*READ_FIELDS, "version", "updated_at"],
        trial_ref=trial.slug,
    )
    return read


MARK_FIELDS = ("case_file", "kind", "shape", "x", "y", "width", "height")


@transaction.atomic
def mark_add(
    *,
    reader: User,
    read: Read,
    case_file: CaseFile,
    kind: str,
    shape: str,
    x: float,
    y: float,
    width: float = 0.0,
    height: float = 0.0,
) -> LesionMark:
    read = _lock_own_draft(reader, read, None)
    if read.marks.count() >= limits.MARKS_PER_READ:
        raise ValidationError({"marks": f"A read holds at most {limits.MARKS_PER_READ} lesion marks."})
    mark = LesionMark(read=read, case_file=case_file, kind=kind, shape=shape, x=x, y=y, width=width, height=height)
    mark.full_clean()
    mark.save()
    audit_record(
        actor=reader,
        action="read.mark_add",
        obj=mark,
        trial_ref=read.case.subject.trial.slug,
        changes=diff(None, snapshot(mark, MARK_FIELDS)),
    )
    return mark


@transaction.atomic
def mark_change(*, reader: User, mark: LesionMark, **fields: Any) -> LesionMark:
    read = _lock_own_draft(reader, mark.read, None)
    unknown = set(fields) - set(MARK_FIELDS)
    if unknown:
        raise ValidationError({"__all__": f"Unknown mark fields: {', '.join(sorted(unknown))}."})
    before = snapshot(mark, MARK_FIELDS)
    for name, value in fields.items():
        setattr(mark, name, value)
    mark.full_clean()
    changes = diff(before, snapshot(mark, MARK_FIELDS))
    if changes:
        mark.save()
        audit_record(
            actor=reader, action="read.mark_change", obj=mark, trial_ref=read.case.subject.trial.slug, changes=changes
        )
    return mark


@transaction.atomic
def mark_delete(*, reader: User, mark: LesionMark) -> None:
    read = _lock_own_draft(reader, mark.read, None)
    before = snapshot(mark, MARK_FIELDS)
    audit_record(
        actor=reader,
        action="read.mark_delete",
        obj=mark,
        trial_ref=read.case.subject.trial.slug,
        changes={key: [value, None] for key, value in before.items()},
    )
    mark.delete()


def _signature(user: User, meaning: str) -> dict[str, Any]:
    return {"signed_at": timezone.now(), "signature_name": user.full_name or user.email, "signature_meaning": meaning}


SIGNED_FIELDS = ("status", "signed_at", "signature_name", "signature_meaning")


def read_sign(
    *, read: Read, signer: User, password: str, meaning: str, version: int, username: str | None = None
) -> Read:
    """Sign and lock a read (21 CFR 11.50/11.200): the password again, a meaning; printed name, time and meaning
    are stored with the read. Every question must be answered and every diagnostic question given a confidence.
    Not one transaction: a wrong password stays counted."""
    if read.reader_id != signer.pk:
        raise ApplicationError("Only the reader signs their read.", code="forbidden", status=403)
    _require_meaning(meaning, "read")
    # The answers first: a read that cannot be signed yet is refused before the password is asked for (and
    # counted); checked again under the lock below.
    draft = Read.objects.select_related("case__subject__trial").get(pk=read.pk)
    errors = check_answers(draft.case.subject.trial.reading_form, draft.answers, draft.confidences, complete=True)
    if errors and not draft.is_signed:
        raise ValidationError(errors)
    signature_verify(user=signer, password=password, username=username)
    with transaction.atomic():
        read = _lock_own_draft(signer, read, version)
        trial = read.case.subject.trial
        _require_open_for_reading(trial)
        errors = check_answers(trial.reading_form, read.answers, read.confidences, complete=True)
        if errors:
            raise ValidationError(errors)
        before = audit_snapshot(read)
        for name, value in _signature(signer, meaning).items():
            setattr(read, name, value)
        read.status = ReadStatus.SIGNED
        read.version += 1
        ReaderAssignment.objects.filter(pk=read.assignment_id).update(last_read_at=read.signed_at)
        audited_save(
            read,
            actor=signer,
            action="read.sign",
            before=before,
            update_fields=[*SIGNED_FIELDS, "version", "updated_at"],
            trial_ref=trial.slug,
        )
        if read.phase == Phase.UNAIDED:
            queue.queue_unaided_signed(read)
            adjudication_check(case=read.case)
            reference_majority_record(case=read.case)
    return read


def read_amend(
    *,
    read: Read,
    signer: User,
    password: str,
    meaning: str,
    reason: str,
    version: int,
    answers: dict[str, Any],
    confidences: dict[str, Any],
    username: str | None = None,
) -> Read:
    """Change a signed read: a reason, the password again; the old values stay in the audit trail and the
    read is signed anew."""
    if read.reader_id != signer.pk:
        raise ApplicationError("Only the reader amends their read.", code="forbidden", status=403)
    reason = _require_reason(reason, "amending a signed read")
    _require_meaning(meaning, "amend")
    signature_verify(user=signer, password=password, username=username)
    with transaction.atomic():
        read = (
            Read.objects.select_for_update(no_key=True, of=("self",))
            .select_related("case__subject__trial")
            .get(pk=read.pk)
        )
        trial = read.case.subject.trial
        _require_open_for_reading(trial)
        if not read.is_signed:
            raise ApplicationError(
                "This read is not signed yet: save the draft instead.", code="not_signed", status=409
            )
        if version != read.version:
            raise ApplicationError(
                "This read changed since you opened it; reload it.",
                code="stale",
                status=409,
                extra={"version": read.version},
            )
        errors = check_answers(trial.reading_form, answers, confidences, complete=True)
        if errors:
            raise ValidationError(errors)
        before = audit_snapshot(read)
        read.answers, read.confidences = dict(answers), dict(confidences)
        if not diff(before, snapshot(read, ("answers", "confidences"))):
            raise ValidationError({"answers": "Nothing changed: there is nothing to amend."})
        for name, value in _signature(signer, meaning).items():
            setattr(read, name, value)
        read.version += 1
        audited_save(
            read,
            actor=signer,
            action="read.amend",
            before=before,
            update_fields=["answers", "confidences", *SIGNED_FIELDS, "version", "updated_at"],
            trial_ref=trial.slug,
            reason=reason,
        )
        if read.phase == Phase.UNAIDED:
            adjudication_check(case=read.case)
            reference_majority_record(case=read.case)
    return read


@transaction.atomic
def read_reset(*, actor: User, read: Read, reason: str) -> None:
    """A manager discards a reader's unsigned read (its answers and marks), with a reason; the case is served to
    them again. Signed reads are never reset."""
    read = (
        Read.objects.select_for_update(no_key=True, of=("self",)).select_related("case__subject__trial").get(pk=read.pk)
    )
    trial = read.case.subject.trial
    _require_manager(actor, trial)
    reason = _require_reason(reason, "resetting a reader's work")
    if read.is_signed:
        raise ApplicationError("A signed read cannot be reset; the reader amends it.", code="signed", status=409)
    old = snapshot(read, ("answers", "confidences", "seconds_on_case", "number", "phase"))
    old["marks"] = [snapshot(m, MARK_FIELDS) for m in read.marks.all()]
    audit_record(
        actor=actor,
        action="read.reset",
        obj=read,
        trial_ref=trial.slug,
        changes={key: [value, None] for key, value in old.items()},
        reason=reason,
    )
    read.marks.all().delete()
    read.delete()
    queue.queue_return(read, every_reader=setup_for(trial).crossing == Crossing.K_PER_CASE)


# --- Adjudication and reference standard ----------------------------------------------------------


def adjudication_check(*, case: Case) -> Adjudication | None:
    """Open an adjudication when the signed unaided reads of a case disagree (call inside the signing
    transaction). Returns the open adjudication, or None when the reads agree."""
    trial = case.subject.trial
    if trial.reference_rule == ReferenceRule.MAJORITY:
        return None  # the majority of readers decides; only its ties go to adjudication (reference_majority_record)
    setup = ReadingSetup.objects.filter(trial=trial).first()
    answers = list(
        Read.objects.filter(case=case, phase=Phase.UNAIDED, status=ReadStatus.SIGNED).values_list("answers", flat=True)
    )
    if setup is None or len(answers) < 2:
        return None
    reasons = discordance(answers, grade_gap=setup.grade_gap)
    if not reasons:
        return None
    return _adjudication_open(case, trial, reasons)


def _adjudication_open(case: Case, trial: Trial, reasons: list[str]) -> Adjudication:
    """The case's adjudication, opened (and audited) with these reasons unless it exists already."""
    adjudication, created = Adjudication.objects.get_or_create(
        case=case, defaults={"trial": trial, "discordance": reasons}
    )
    if created:
        audit_record(
            actor=None,
            action="adjudication.open",
            obj=adjudication,
            trial_ref=trial.slug,
            changes={"discordance": [None, reasons]},
        )
    return adjudication


ADJUDICATION_ANSWERS = ("icdr_grade", "glaucoma")


def _unaided_reading_done(setup: ReadingSetup, readers: set[Any]) -> bool:
    """Whether every reader the case waits for has signed their unaided read of it: k readers with k readers per
    case, else every active reader assigned to the unaided phase."""
    if setup.crossing == Crossing.K_PER_CASE:
        return len(readers) >= setup.readers_per_case
    assigned = set(
        ReaderAssignment.objects.filter(trial=setup.trial, phase=Phase.UNAIDED, is_active=True).values_list(
            "reader_id", flat=True
        )
    )
    return bool(assigned) and assigned <= readers


def reference_majority_record(*, case: Case) -> ReferenceStandard | Adjudication | None:
    """The majority-of-readers rule (call inside the signing transaction). Once every reader the case waits for
    has signed their unaided read of it, its reference standard is the answer that more than half of those reads
    give, for the DR grade and for glaucoma; a tie (no answer held by more than half) opens an adjudication
    instead. Nothing changes once the reference standard is locked (a signed adjudication with a reason does
    then), once the panel has signed the case, or for a calibration case (kept out of the analyses)."""
    trial = case.subject.trial
    if trial.reference_rule != ReferenceRule.MAJORITY:
        return None
    setup = ReadingSetup.objects.filter(trial=trial).first()
    if setup is None or setup.reference_locked_at or CalibrationCase.objects.filter(case=case).exists():
        return None
    reads = list(
        Read.objects.filter(case=case, phase=Phase.UNAIDED, status=ReadStatus.SIGNED).values_list(
            "reader_id", "answers"
        )
    )
    if not _unaided_reading_done(setup, {reader for reader, _ in reads}):
        return None
    if Adjudication.objects.filter(case=case, status=AdjudicationStatus.SIGNED).exists():
        return None
    decided: dict[str, Any] = {}
    ties = []
    for question in ADJUDICATION_ANSWERS:
        value, tie = majority([answers for _, answers in reads], question)
        if tie:
            label = CATALOGUE[question].label if question in CATALOGUE else question.replace("_", " ")
            ties.append(f"no majority for the {label}")
        elif value is not None:
            decided[question] = value
    if ties:
        return _adjudication_open(case, trial, ties)
    if not decided:
        return None
    grade = decided.get("icdr_grade")
    return reference_standard_record(
        actor=None,
        case=case,
        source=ReferenceSource.MAJORITY,
        icdr_grade=int(grade) if grade is not None else None,
        glaucoma=str(decided.get("glaucoma") or ""),
        reason="the majority of the signed reads changed (a read was amended)",
    )


def adjudication_sign(
    *,
    adjudication: Adjudication,
    signer: User,
    password: str,
    meaning: str,
    answers: dict[str, Any],
    version: int,
    reason: str = "",
    username: str | None = None,
) -> Adjudication:
    """A panel member sets the case's reference standard, signed like a read. Panel members see the prior
    reads: the event records that they were unblinded by design. After the reference standard is locked,
    a change needs a reason."""
    trial = adjudication.trial
    if not PanelMember.objects.filter(trial=trial, user=signer, is_active=True).exists():
        raise ApplicationError("Only the trial's adjudication panel signs adjudications.", code="forbidden", status=403)
    _require_meaning(meaning, "adjudicate")
    unknown = set(answers) - set(ADJUDICATION_ANSWERS)
    if unknown or not answers:
        raise ValidationError({"answers": "Give the reference DR grade (icdr_grade), glaucoma, or both."})
    errors = check_answers(
        ["icdr_grade", "glaucoma"], {k: v for k, v in answers.items() if v not in (None, "")}, {}, complete=False
    )
    if errors:
        raise ValidationError(errors)
    signature_verify(user=signer, password=password, username=username)
    with transaction.atomic():
        # The audit chain's lock first (as reference_standard_record takes it), then the adjudication: the reference
        # lock is read after every committed change, so a lock signed meanwhile cannot slip between this check and
        # the change of a locked reference made without a reason.
        audit_chain_lock()
        adjudication = Adjudication.objects.select_for_update(no_key=True).get(pk=adjudication.pk)
        setup = setup_for(trial)
        if version != adjudication.version:
            raise ApplicationError(
                "This adjudication changed since you opened it; reload it.",
                code="stale",
                status=409,
                extra={"version": adjudication.version},
            )
        if adjudication.status == AdjudicationStatus.SIGNED or setup.reference_locked_at:
            reason = _require_reason(reason, "changing a signed or locked reference standard")
        before = snapshot(adjudication, ("status", "answers", "adjudicator", *SIGNED_FIELDS[1:]))
        adjudication.answers = dict(answers)
        adjudication.adjudicator = signer
        adjudication.status = AdjudicationStatus.SIGNED
        for name, value in _signature(signer, meaning).items():
            setattr(adjudication, name, value)
        adjudication.version += 1
        adjudication.full_clean()
        adjudication.save()
        grade = answers.get("icdr_grade")
        reference_standard_record(
            actor=None,
            case=adjudication.case,
            source="adjudication",
            icdr_grade=int(grade) if grade not in (None, "") else None,
            glaucoma=answers.get("glaucoma") or "",
            reason=reason or "",
        )
        changes = diff(before, snapshot(adjudication, ("status", "answers", "adjudicator", *SIGNED_FIELDS[1:])))
        changes["unblinded_by_design"] = [None, True]
        audit_record(
            actor=signer,
            action="adjudication.sign",
            obj=adjudication,
            trial_ref=trial.slug,
            changes=changes,
            reason=reason,
        )
    return adjudication


def reference_lock(
    *, actor: User, trial: Trial, password: str, meaning: str, username: str | None = None
) -> ReadingSetup:
    """The manager locks the trial's reference standard (signed); later adjudications need a reason."""
    _require_manager(actor, trial)
    _require_meaning(meaning, "lock")
    signature_verify(user=actor, password=password, username=username)
    with transaction.atomic():
        setup = ReadingSetup.objects.select_for_update(no_key=True).get(pk=setup_for(trial).pk)
        if setup.reference_locked_at:
            raise ApplicationError("The reference standard is already locked.", code="locked", status=409)
        setup.reference_locked_at = timezone.now()
        setup.reference_locked_by = actor
        setup.save(update_fields=["reference_locked_at", "reference_locked_by", "updated_at"])
        audit_record(
            actor=actor,
            action="reference.lock",
            obj=setup,
            trial_ref=trial.slug,
            changes={
                "reference_locked_at": [None, setup.reference_locked_at.isoformat()],
                "signature_name": [None, actor.full_name or actor.email],
                "signature_meaning": [None, meaning],
            },
        )
    return setup
