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

from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, Max, Prefetch, Q, QuerySet
from django.utils import timezone

from platform_core.accounts.models import Role, User
from reading.models import (
    Adjudication,
    AdjudicationStatus,
    CalibrationCase,
    PanelMember,
    Phase,
    Read,
    ReaderAssignment,
    ReadingSetup,
    ReadStatus,
)
from trials.models import Case, CaseFile, CaseStatus, SubjectStatus, Trial
from trials.selectors import active_case_files, trial_roles

STALE_READER_DAYS = 14  # a reader who has not read for this long is flagged on the progress table


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
    """AI outputs are part of a read only in the AI-aided phase (the extension of the trials blinding rule)."""
    return read.phase == Phase.AIDED and read.assignment.is_active


def read_ai_outputs(read: Read) -> list[Any]:
    """The AI predictions of the case, for the reader's own AI-aided read of it; empty otherwise."""
    if not read_may_show_ai(read):
        return []
    from diagnosis.models import Prediction

    return list(Prediction.objects.filter(case_id=read.case_id).select_related("model_version").order_by("created_at"))


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
    return Role.TRIAL_MANAGER in trial_roles(user, trial)


def may_oversee_reading(user: User, trial: Trial) -> bool:
    return bool(trial_roles(user, trial) & {Role.TRIAL_MANAGER, Role.MONITOR, Role.STATISTICIAN})


def progress_table(trial: Trial, *, now: Any = None) -> list[dict[str, Any]]:
    """Per reader and phase (for managers and monitors): group, signed, drafts, mean seconds per signed case,
    last read, and whether the reader has not read for ``STALE_READER_DAYS`` days. No answers."""
    now = now or timezone.now()
    stale_before = now - timedelta(days=STALE_READER_DAYS)
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
    return [
        {
            "assignment": a,
            "reader": a.reader.full_name or a.reader.email,
            "group": a.group,
            "phase": a.phase,
            "signed": a.signed,
            "drafts": a.drafts,
            "mean_seconds": round(a.mean_seconds) if a.mean_seconds is not None else None,
            "last_read_at": a.last_read_at,
            "stale": a.is_active and (a.last_read_at is None or a.last_read_at < stale_before),
            "is_active": a.is_active,
        }
        for a in assignments
    ]


def setup_of(trial: Trial) -> ReadingSetup | None:
    return ReadingSetup.objects.filter(trial=trial).first()


def is_panel_member(user: User, trial: Trial) -> bool:
    return _active(user) and PanelMember.objects.filter(trial=trial, user=user, is_active=True).exists()


def adjudication_queue(user: User, trial: Trial) -> QuerySet[Adjudication]:
    """Open adjudications of the trial for a panel member, with the prior signed unaided reads (unblinded by
    design); nothing for anyone else."""
    if not is_panel_member(user, trial):
        return Adjudication.objects.none()
    prior = Read.objects.filter(phase=Phase.UNAIDED, status=ReadStatus.SIGNED).select_related("assignment")
    return (
        Adjudication.objects.filter(trial=trial)
        .select_related("case")
        .prefetch_related(Prefetch("case__reads", queryset=prior, to_attr="prior_reads"))
        .order_by("status", "created_at")
    )


def open_adjudication_count(trial: Trial) -> int:
    return Adjudication.objects.filter(trial=trial, status=AdjudicationStatus.OPEN).count()


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
