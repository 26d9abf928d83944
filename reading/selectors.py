"""What blind reading shows, and to whom: the one place that decides what a reader may see.

Blinding rules (item 5 of issue 11), all written here:
- a reader sees their own reads only, by their own case number: never the subject's pseudonym, site or visit
  day, never another reader's read, never the reference standard;
- AI outputs of a case are shown to a reader only inside their own AI-aided read of it (``read_ai_outputs``);
  everywhere else the trials rule ``ai_blinded_trial_ids`` hides the trial's AI outputs from its readers;
- adjudication panel members see the prior reads of the discordant cases in their queue (unblinded by design,
  recorded in the audit trail when they sign);
- managers see progress (counts and times), not answers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Exists, Max, Min, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from platform_core.accounts.models import Role, User
from reading import clock
from reading.models import (
    DEFAULT_STALE_AFTER_DAYS,
    Adjudication,
    AdjudicationStatus,
    CalibrationCase,
    Crossing,
    PanelMember,
    Phase,
    Read,
    ReaderAssignment,
    ReadingSetup,
    ReadStatus,
)
from trials.models import Case, CaseFile, CaseStatus, SubjectStatus, Trial
from trials.reading_form import CATALOGUE
from trials.selectors import active_case_files, active_files, trial_roles, user_is_blinded_to_ai


def _active(user: User) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def reading_trials_for(user: User) -> QuerySet[Trial]:
    """Trials where the user has an active reader assignment or sits on the adjudication panel."""
    if not _active(user):
        return Trial.objects.none()
    return Trial.objects.filter(
        Q(reader_assignments__reader=user, reader_assignments__is_active=True)
        | Q(panel_members__user=user, panel_members__is_active=True)
    ).distinct()


def assignments_of(user: User, trial: Trial) -> QuerySet[ReaderAssignment]:
    if not _active(user):
        return ReaderAssignment.objects.none()
    return ReaderAssignment.objects.filter(trial=trial, reader=user, is_active=True).order_by("phase")


def reads_of(user: User) -> QuerySet[Read]:
    """The user's own reads (nobody else's), with what the reading page needs."""
    if not _active(user):
        return Read.objects.none()
    return Read.objects.filter(reader=user).select_related("assignment__trial", "case").prefetch_related("marks")


def read_case_files(read: Read) -> list[CaseFile]:
    """The active files of the case being read (``trials.selectors.active_case_files``: neither superseded nor
    withdrawn), served by ``reading`` views under the read's own URL, which names no pseudonym."""
    return list(read_case_files_qs(read).order_by("created_at"))


def read_case_view(read: Read) -> dict[str, Any]:
    """What the reader sees of the case: their case number, the eye, the images, visual-field values and the
    OCT value. Deliberately no pseudonym, site, visit day, AI output, other read or reference standard."""
    case = read.case
    files = read_case_files(read)
    return {
        "number": read.number,
        "phase": read.phase,
        "laterality": case.laterality,
        "oct_rnfl_thickness_um": case.oct_rnfl_thickness_um,
        "files": files,
        "visual_fields": [f.visual_field for f in files if hasattr(f, "visual_field")],
    }


def read_may_show_ai(read: Read) -> bool:
    """AI outputs are part of a read only in the AI-aided phase (the extension of the trials blinding rule), and
    never before the reader's unaided read of the same case is signed."""
    if read.phase != Phase.AIDED or not read.assignment.is_active or read.unaided_read_id is None:
        return False
    return Read.objects.filter(
        pk=read.unaided_read_id, reader_id=read.reader_id, case_id=read.case_id, status=ReadStatus.SIGNED
    ).exists()


def read_ai_outputs(read: Read) -> list[Any]:
    """The AI predictions of the case, for the reader's own AI-aided read of it; empty otherwise."""
    if not read_may_show_ai(read):
        return []
    from diagnosis.models import Prediction

    return list(Prediction.objects.filter(case_id=read.case_id).select_related("model_version").order_by("created_at"))


def read_glaucoma_evidence(read: Read, ai_outputs: list[Any]) -> dict[str, Any] | None:
    """The glaucoma evidence per modality (fundus net, visual field net, OCT RNFL) of the case, for the reader's
    own AI-aided read only: ``ai_outputs`` must come from ``read_ai_outputs`` (empty before then)."""
    if not ai_outputs:
        return None
    from diagnosis.selectors import fused_glaucoma

    return fused_glaucoma(ai_outputs, read.case.oct_rnfl_thickness_um, trial_id=read.assignment.trial_id)


def reader_progress(user: User, trial: Trial) -> list[dict[str, Any]]:
    """Per phase of the reader: cases signed, in progress (draft) and remaining (a constant number of queries)."""
    assignments = list(assignments_of(user, trial))
    if not assignments:
        return []
    readable = Case.objects.filter(
        subject__trial=trial, status=CaseStatus.COMPLETE, subject__status=SubjectStatus.ENROLLED
    ).count()
    counts = {
        row["phase"]: row
        for row in Read.objects.filter(reader=user, case__subject__trial=trial)
        .values("phase")
        .annotate(
            signed=Count("id", filter=Q(status=ReadStatus.SIGNED)), draft=Count("id", filter=Q(status=ReadStatus.DRAFT))
        )
    }
    rows = []
    for a in assignments:
        c = counts.get(a.phase, {"signed": 0, "draft": 0})
        rows.append(
            {
                "phase": a.phase,
                "phase_label": Phase(a.phase).label,
                "signed": c["signed"],
                "draft": c["draft"],
                "remaining": max(0, readable - c["signed"] - c["draft"]),
            }
        )
    return rows


def may_manage_reading(user: User, trial: Trial) -> bool:
    """Trial managers, unless they also read in the trial: the set-up, calibration answers, reset and reference
    pages would unblind them (the blinding rule of ``trials.selectors.user_is_blinded_to_ai``)."""
    return Role.TRIAL_MANAGER in trial_roles(user, trial) and not user_is_blinded_to_ai(user, trial)


def may_oversee_reading(user: User, trial: Trial) -> bool:
    """Managers, monitors and statisticians see reading progress, unless they also read in the trial."""
    roles = trial_roles(user, trial)
    return bool(roles & {Role.TRIAL_MANAGER, Role.MONITOR, Role.STATISTICIAN}) and Role.READER not in roles


def progress_table(trial: Trial, *, now: Any = None) -> list[dict[str, Any]]:
    """Per reader and phase (for managers and monitors): group, signed, drafts, remaining, mean seconds per signed
    case, last read (a case opened or signed), and whether an active reader with cases left has not read for the
    set-up's ``stale_after_days`` (default 7) days. No answers."""
    now = now or timezone.now()
    setup = setup_of(trial)
    stale_days = setup.stale_after_days if setup else DEFAULT_STALE_AFTER_DAYS
    stale_before = now - timedelta(days=stale_days)
    readable = Case.objects.filter(
        subject__trial=trial, status=CaseStatus.COMPLETE, subject__status=SubjectStatus.ENROLLED
    ).count()
    assignments = (
        ReaderAssignment.objects.filter(trial=trial)
        .select_related("reader")
        .annotate(
            signed=Count("reads", filter=Q(reads__status=ReadStatus.SIGNED)),
            drafts=Count("reads", filter=Q(reads__status=ReadStatus.DRAFT)),
            mean_seconds=Avg("reads__seconds_on_case", filter=Q(reads__status=ReadStatus.SIGNED)),
            last_signed=Max("reads__signed_at"),
        )
        .order_by("group", "reader__full_name", "phase")
    )
    rows = []
    for a in assignments:
        last = a.last_read_at
        remaining = max(0, readable - a.signed - a.drafts)
        rows.append(
            {
                "assignment": a,
                "reader": a.reader.full_name or a.reader.email,
                "group": a.group,
                "phase": a.phase,
                "signed": a.signed,
                "drafts": a.drafts,
                "remaining": remaining,
                "mean_seconds": round(a.mean_seconds) if a.mean_seconds is not None else None,
                "last_read_at": last,
                "stale": a.is_active and bool(remaining or a.drafts) and (last is None or last < stale_before),
                "stale_days": stale_days,
                "is_active": a.is_active,
            }
        )
    return rows


def progress_by_group(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The progress table summed per experience group and phase: readers, signed, drafts, remaining, mean seconds
    per signed case (weighted by signed reads), readers flagged as not reading."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        g = groups.setdefault(
            (row["group"], row["phase"]),
            {
                "group": row["group"],
                "phase": row["phase"],
                "readers": 0,
                "signed": 0,
                "drafts": 0,
                "remaining": 0,
                "seconds": 0,
                "stale": 0,
            },
        )
        g["readers"] += 1
        for key in ("signed", "drafts", "remaining"):
            g[key] += row[key]
        g["seconds"] += (row["mean_seconds"] or 0) * row["signed"]
        g["stale"] += row["stale"]
    for g in groups.values():
        g["mean_seconds"] = round(g.pop("seconds") / g["signed"]) if g["signed"] else None
    return sorted(groups.values(), key=lambda g: (g["group"], g["phase"]))


def setup_of(trial: Trial) -> ReadingSetup | None:
    return ReadingSetup.objects.filter(trial=trial).first()


def aided_phase_opens(user: User, trial: Trial) -> datetime | None:
    """When the reader's AI-aided phase next serves a case, while the washout still holds it back: the earliest
    washout end of their signed unaided reads of cases they have not yet opened aided and that will be servable
    then as they are now (complete, subject enrolled; with k readers per case, not yet opened aided by k readers
    unless a calibration case). None when a case is servable now, or when none will be (no aided phase, nothing
    signed unaided that can still come up)."""
    setup = setup_of(trial)
    if setup is None or not setup.aided_phase:
        return None
    washout = timedelta(days=setup.washout_days)
    opened_aided = Read.objects.filter(reader=user, case=OuterRef("case"), phase=Phase.AIDED)
    # Only reads still held back: a washed-out case that is not servable (excluded since, or read by enough
    # readers) must not hide the date of the next one.
    first = Read.objects.filter(
        reader=user,
        case__subject__trial=trial,
        phase=Phase.UNAIDED,
        status=ReadStatus.SIGNED,
        signed_at__gt=clock.now() - washout,
        case__status=CaseStatus.COMPLETE,
        case__subject__status=SubjectStatus.ENROLLED,
    ).exclude(Exists(opened_aided))
    if setup.crossing == Crossing.K_PER_CASE:
        full = (
            Read.objects.filter(case=OuterRef("case"), phase=Phase.AIDED)
            .order_by()
            .values("case")
            .annotate(n=Count("pk"))
            .filter(n__gte=setup.readers_per_case)
        )
        first = first.exclude(Exists(full) & Q(case__calibration__isnull=True))
    first = first.aggregate(first=Min("signed_at"))["first"]
    if first is None:
        return None
    opens: datetime = first + washout
    return opens


def is_panel_member(user: User, trial: Trial) -> bool:
    return _active(user) and PanelMember.objects.filter(trial=trial, user=user, is_active=True).exists()


def adjudication_queue(user: User, trial: Trial) -> QuerySet[Adjudication]:
    """Open adjudications of the trial for a panel member, with the prior signed unaided reads (unblinded by
    design) as ``case.prior_reads`` and the case's active files with a preview as ``case.preview_files``
    (prefetched: the page's query count does not grow with the queue); nothing for anyone else."""
    if not is_panel_member(user, trial):
        return Adjudication.objects.none()
    prior = Read.objects.filter(phase=Phase.UNAIDED, status=ReadStatus.SIGNED).select_related("assignment")
    previews = active_files().exclude(preview="").select_related("visual_field")
    return (
        Adjudication.objects.filter(trial=trial)
        .select_related("case")
        .prefetch_related(
            Prefetch("case__reads", queryset=prior, to_attr="prior_reads"),
            Prefetch("case__files", queryset=previews, to_attr="preview_files"),
        )
        .order_by("status", "created_at")
    )


def open_adjudication_count(trial: Trial) -> int:
    return Adjudication.objects.filter(trial=trial, status=AdjudicationStatus.OPEN).count()


def reference_lock_reason(*, trial: Trial) -> str | None:
    """Why the trial's reference standard is locked, or None (registered as a ``trials.hooks`` lock check)."""
    locked_at = ReadingSetup.objects.filter(trial=trial).values_list("reference_locked_at", flat=True).first()
    if locked_at is None:
        return None
    return (
        f"the reference standard of {trial.protocol_number} was locked on {locked_at:%Y-%m-%d}; after the lock "
        "it changes only through a signed adjudication with a reason."
    )


def calibration_cases(trial: Trial) -> QuerySet[CalibrationCase]:
    """The trial's calibration cases (managers only: readers cannot tell them apart)."""
    return CalibrationCase.objects.filter(case__subject__trial=trial).select_related("case__subject")


def calibration_candidates(trial: Trial) -> QuerySet[Case]:
    """Cases that may become calibration cases: readable and not one already."""
    return (
        Case.objects.filter(
            subject__trial=trial,
            status=CaseStatus.COMPLETE,
            subject__status=SubjectStatus.ENROLLED,
            calibration__isnull=True,
        )
        .select_related("subject")
        .order_by("subject__pseudonym", "laterality", "visit_day")
    )


def calibration_drift(trial: Trial) -> dict[str, Any]:
    """Reader drift: per reader, agreement with the known answers of the calibration cases per ISO week of
    signing (one query). ``{"weeks": [...], "rows": [{"reader", "cells": [{"reads", "agree", "percent"}|None],
    "reads", "agree", "percent", "change"}]}``; ``change`` is the last week's percentage minus the first's."""
    known = dict(CalibrationCase.objects.filter(case__subject__trial=trial).values_list("case_id", "known_answers"))
    cells: dict[Any, dict[str, dict[str, int]]] = {}
    names: dict[Any, str] = {}
    for read in (
        Read.objects.filter(case_id__in=known, status=ReadStatus.SIGNED).select_related("reader").order_by("signed_at")
    ):
        if read.signed_at is None:  # a signed read always has its time (signed_read_has_signature)
            continue
        year, week, _ = read.signed_at.isocalendar()
        key = f"{year}-W{week:02d}"
        names[read.reader_id] = read.reader.full_name or read.reader.email
        cell = cells.setdefault(read.reader_id, {}).setdefault(key, {"reads": 0, "agree": 0})
        cell["reads"] += 1
        cell["agree"] += all(str(read.answers.get(k)) == str(v) for k, v in known[read.case_id].items())
    weeks = sorted({week for by_week in cells.values() for week in by_week})
    rows = []
    for reader_id, by_week in cells.items():
        for cell in by_week.values():
            cell["percent"] = round(100 * cell["agree"] / cell["reads"])
        reads = sum(c["reads"] for c in by_week.values())
        agree = sum(c["agree"] for c in by_week.values())
        ordered = [by_week[w] for w in weeks if w in by_week]
        rows.append(
            {
                "reader": names[reader_id],
                "cells": [by_week.get(w) for w in weeks],
                "reads": reads,
                "agree": agree,
                "percent": round(100 * agree / reads),
                "change": ordered[-1]["percent"] - ordered[0]["percent"] if len(ordered) > 1 else None,
            }
        )
    return {"weeks": weeks, "rows": sorted(rows, key=lambda r: r["reader"])}


def calibration_agreement(trial: Trial) -> list[dict[str, Any]]:
    """Per reader: signed reads of calibration cases and how many agree with the known answers (reader drift)."""
    known = dict(CalibrationCase.objects.filter(case__subject__trial=trial).values_list("case_id", "known_answers"))
    rows: dict[Any, dict[str, Any]] = {}
    for read in (
        Read.objects.filter(case_id__in=known, status=ReadStatus.SIGNED).select_related("reader").order_by("signed_at")
    ):
        row = rows.setdefault(read.reader_id, {"reader": str(read.reader), "reads": 0, "agree": 0})
        row["reads"] += 1
        row["agree"] += all(str(read.answers.get(k)) == str(v) for k, v in known[read.case_id].items())
    return list(rows.values())


def adjudication_files(user: User, adjudication_pk: Any) -> QuerySet[CaseFile]:
    """The active files of an open adjudication's case, for a member of that trial's panel (unblinded by design);
    nothing for anyone else."""
    adjudication = Adjudication.objects.filter(pk=adjudication_pk).select_related("trial").first()
    if adjudication is None or not is_panel_member(user, adjudication.trial):
        return CaseFile.objects.none()
    return active_case_files(adjudication.case_id).select_related("visual_field")


def labelled_answers(answers: dict[str, Any], confidences: dict[str, Any]) -> list[dict[str, Any]]:
    """A read's answers as a person reads them: the question's label, the answer's label, the confidence."""
    rows = []
    for key, value in answers.items():
        question = CATALOGUE.get(key)
        if question is None:
            continue
        shown = dict(question.choices).get(str(value), value) if question.choices else value
        rows.append({"question": question.label, "answer": shown, "confidence": confidences.get(key)})
    return rows


def read_case_files_qs(read: Read) -> QuerySet[CaseFile]:
    return active_case_files(read.case_id).select_related("visual_field")


def marks_of(user: User) -> QuerySet:
    """Lesion marks of the user's own reads."""
    from reading.models import LesionMark

    if not _active(user):
        return LesionMark.objects.none()
    return LesionMark.objects.filter(read__reader=user).select_related("read__case__subject__trial", "case_file")


def reads_managed_by(user: User) -> QuerySet[Read]:
    """Reads of the trials the user manages (for reset; pages and API show them no answers)."""
    from trials.selectors import managed_trials_for

    return Read.objects.filter(case__subject__trial__in=managed_trials_for(user).values("pk")).select_related(
        "case__subject__trial"
    )


def adjudications_for(user: User) -> QuerySet[Adjudication]:
    if not _active(user):
        return Adjudication.objects.none()
    return Adjudication.objects.filter(
        trial__panel_members__user=user, trial__panel_members__is_active=True
    ).select_related("trial", "case")


def analysable_reads(trial: Trial) -> QuerySet[Read]:
    """Signed reads of the trial for its analyses: hidden calibration cases are left out (they measure the
    readers, not the AI), and each read carries its reader's group and phase."""
    return (
        Read.objects.filter(case__subject__trial=trial, status=ReadStatus.SIGNED, case__calibration__isnull=True)
        .select_related("assignment", "reader")
        .order_by("phase", "reader_id", "case_id")
    )


def assignments_managed_by(user: User) -> QuerySet[ReaderAssignment]:
    from trials.selectors import managed_trials_for

    return ReaderAssignment.objects.filter(trial__in=managed_trials_for(user).values("pk")).select_related("trial")


def unsigned_reads(trial: Trial) -> QuerySet[Read]:
    """The trial's unsigned reads, for the manager's reset page: reader, phase, case number, time on case and
    last change; the page shows no answers."""
    return (
        Read.objects.filter(assignment__trial=trial, status=ReadStatus.DRAFT)
        .select_related("reader", "assignment")
        .order_by("reader__full_name", "phase", "number")
    )


def reference_summary(trial: Trial) -> dict[str, Any]:
    """The trial's reference standards counted by source, and the readable cases still without one."""
    from trials.models import ReferenceStandard

    by_source = dict(
        ReferenceStandard.objects.filter(case__subject__trial=trial)
        .values("source")
        .annotate(n=Count("id"))
        .values_list("source", "n")
    )
    readable = Case.objects.filter(
        subject__trial=trial, status=CaseStatus.COMPLETE, subject__status=SubjectStatus.ENROLLED
    )
    return {
        "by_source": sorted(by_source.items()),
        "total": sum(by_source.values()),
        "without": readable.filter(reference__isnull=True).count(),
    }
