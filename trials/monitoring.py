"""Reads for monitoring (issue 10, item 7): the per-site completeness grid and the data queries a user may see.

- The grid (like REDCap's record status dashboard): one row per subject, one column per modality the trial
  expects, and the AI status; for the trial's monitors and managers. A constant number of queries.
- Data queries: monitors and managers see a trial's queries at every site, coordinators those of the sites where
  they coordinate. Readers never: nobody sees the queries of a trial where they read cases (blinding).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet

from platform_core.accounts.models import Role, User
from platform_core.accounts.selectors import hospital_ids_for
from trials import hooks
from trials.models import (
    Case,
    CaseFile,
    CaseStatus,
    DataQuery,
    DataQueryNote,
    DataQueryStatus,
    FileStatus,
    Modality,
    Subject,
    Trial,
    TrialSite,
)
from trials.selectors import ai_blinded_trial_ids

GRID_ROLES = (Role.TRIAL_MANAGER, Role.MONITOR)
QUERY_ROLES = (Role.COORDINATOR, Role.TRIAL_MANAGER, Role.MONITOR)


def data_queries_for(user: User) -> QuerySet[DataQuery]:
    """Queries the user may see, with their case, file, site and notes loaded (newest first)."""
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return DataQuery.objects.none()
    overseen = TrialSite.objects.filter(hospital__in=hospital_ids_for(user, [Role.TRIAL_MANAGER, Role.MONITOR])).values(
        "trial_id"
    )
    visible = Q(case__subject__site__hospital__in=hospital_ids_for(user, [Role.COORDINATOR])) | Q(
        case__subject__trial__in=overseen
    )
    return (
        DataQuery.objects.filter(visible)
        .exclude(case__subject__trial__in=ai_blinded_trial_ids(user))
        .select_related("case__subject__site__hospital", "case__subject__trial", "case_file", "raised_by")
        .prefetch_related(Prefetch("notes", queryset=DataQueryNote.objects.select_related("author")))
        .order_by("-created_at")
    )


@dataclass
class GridCell:
    done: int
    expected: int

    @property
    def state(self) -> str:
        if self.expected == 0:
            return "none"
        if self.done >= self.expected:
            return "complete"
        return "partial" if self.done else "missing"


@dataclass
class GridRow:
    subject: Subject
    cases: int = 0
    modalities: list[GridCell] = field(default_factory=list)
    ai: GridCell | None = None
    ai_failed: int = 0
    open_queries: int = 0


@dataclass
class CompletenessGrid:
    trial: Trial
    modalities: list[tuple[str, str]]  # (value, label)
    rows: list[GridRow]
    ai_blinded: bool


def completeness_grid(*, user: User, trial: Trial, site: TrialSite | None = None) -> CompletenessGrid:
    """Subjects of the trial (one site's, if given) by the expected modalities and AI status. Counts cases that
    are not excluded: a modality is complete when every such case has an accepted file of it; AI when every
    such case was read. Five queries whatever the number of subjects."""
    subjects = Subject.objects.filter(trial=trial).select_related("site__hospital").order_by("pseudonym")
    if site is not None:
        subjects = subjects.filter(site=site)
    subject_rows = list(subjects)
    cases: dict[Any, list[Any]] = defaultdict(list)
    case_ids = []
    for case_id, subject_id in (
        Case.objects.filter(subject__in=[s.pk for s in subject_rows])
        .exclude(status=CaseStatus.EXCLUDED)
        .values_list("pk", "subject_id")
    ):
        cases[subject_id].append(case_id)
        case_ids.append(case_id)
    with_files: dict[str, set[Any]] = defaultdict(set)
    for case_id, modality in (
        CaseFile.objects.filter(case__in=case_ids, status=FileStatus.ACCEPTED)
        .values_list("case_id", "modality")
        .distinct()
    ):
        with_files[modality].add(case_id)
    ai = hooks.case_ai_status(user=user, trial=trial, case_ids=case_ids) if case_ids else {}
    open_counts = dict(
        DataQuery.objects.filter(case__in=case_ids)
        .exclude(status=DataQueryStatus.CLOSED)
        .values("case__subject_id")
        .annotate(n=Count("id"))
        .values_list("case__subject_id", "n")
    )
    modalities = [(m, Modality(m).label) for m in trial.modalities if m in Modality.values]
    rows = []
    for subject in subject_rows:
        own = cases[subject.pk]
        row = GridRow(subject=subject, cases=len(own), open_queries=open_counts.get(subject.pk, 0))
        row.modalities = [GridCell(sum(1 for c in own if c in with_files[m]), len(own)) for m, _ in modalities]
        if ai is not None:
            row.ai = GridCell(sum(1 for c in own if ai.get(c) == "succeeded"), len(own))
            row.ai_failed = sum(1 for c in own if ai.get(c) == "failed")
        rows.append(row)
    return CompletenessGrid(trial=trial, modalities=modalities, rows=rows, ai_blinded=ai is None)
