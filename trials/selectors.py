"""Reads of trials, sites, subjects and cases, scoped by membership.

Scoping rules:
- coordinators see subjects and cases of the hospitals where they coordinate, nothing else;
- trial managers, statisticians and monitors see the whole trial when they hold that role at one of
  its sites (the trial-wide roles of DESIGN.md);
- readers see trials they read for, but no subject or case lists (they read through their worklist).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet

from platform_core.accounts.models import Role, User
from platform_core.accounts.selectors import hospital_ids_for, user_has_role
from trials.models import Case, CaseFile, FileStatus, Modality, Subject, SubjectStatus, Trial, TrialSite, TrialStatus

TRIAL_WIDE_ROLES = (Role.TRIAL_MANAGER, Role.STATISTICIAN, Role.MONITOR)
# Who may see subjects and cases (and so their files and, unless blinded, their AI outputs): defined here
# only; pages, APIs and diagnosis import it.
SUBJECT_ROLES = (Role.COORDINATOR, *TRIAL_WIDE_ROLES)


def _active(user: User) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def _trial_ids_with_role(user: User, roles: tuple[Role, ...]) -> QuerySet[TrialSite, Any]:
    return TrialSite.objects.filter(hospital__in=hospital_ids_for(user, roles)).values("trial_id")


def trials_for(user: User) -> QuerySet[Trial]:
    """Trials with a site where the user holds any role, and drafts the user created."""
    if not _active(user):
        return Trial.objects.none()
    # A creator sees their own drafts; after that, memberships at the trial's sites decide.
    visible = Q(id__in=_trial_ids_with_role(user, tuple(Role))) | Q(created_by=user, status=TrialStatus.DRAFT)
    return Trial.objects.filter(visible).select_related("created_by").distinct()


def ai_blinded_trial_ids(user: User) -> QuerySet[Trial, Any]:
    """The blinding rule, written once: ids of the trials whose AI outputs (inference jobs, predictions,
    attention maps, fused probabilities) the user must not see, which are the trials where they read cases
    (blind reading), whatever other role they also hold there. The AI selectors, the API, the admin and the
    case page all apply it through this function or ``user_is_blinded_to_ai``."""
    if not _active(user):
        return Trial.objects.none().values("pk")
    return Trial.objects.filter(id__in=_trial_ids_with_role(user, (Role.READER,))).values("pk")


def user_is_blinded_to_ai(user: User, trial: Trial) -> bool:
    """Whether ``ai_blinded_trial_ids`` hides this trial's AI outputs from the user (one query)."""
    return ai_blinded_trial_ids(user).filter(pk=trial.pk).exists()


def audit_scope(user: User, roles: tuple[Role, ...]) -> Q:
    """Audit events of the trials where the user holds one of ``roles`` at a site (registered with the
    audit app in ``TrialsConfig.ready()``: trial-wide oversight for managers and monitors)."""
    return Q(trial_ref__in=TrialSite.objects.filter(hospital__in=hospital_ids_for(user, roles)).values("trial__slug"))


def audit_blinded(user: User) -> Q:
    """Audit events a reviewer who also reads in a trial must not see: every event of that trial (its reads,
    reference standard and predictions are recorded there). Registered with the audit app in ``ready()``."""
    return Q(trial_ref__in=Trial.objects.filter(pk__in=ai_blinded_trial_ids(user)).values("slug"))


def managed_trials_for(user: User) -> QuerySet[Trial]:
    if not _active(user):
        return Trial.objects.none()
    managed = Q(id__in=_trial_ids_with_role(user, (Role.TRIAL_MANAGER,)))
    if user_has_role(user, Role.TRIAL_MANAGER):
        managed |= Q(created_by=user, status=TrialStatus.DRAFT)
    return Trial.objects.filter(managed).distinct()


def trial_roles(user: User, trial: Trial) -> set[str]:
    """The roles the user holds in this trial (at any of its sites; a creator manages their draft, and once
    it leaves draft only memberships at its sites count)."""
    if not _active(user):
        return set()
    roles = set(
        TrialSite.objects.filter(trial=trial, hospital__memberships__user=user, hospital__memberships__is_active=True)
        .values_list("hospital__memberships__role", flat=True)
        .distinct()
    )
    if trial.created_by_id == user.pk and trial.status == TrialStatus.DRAFT and user_has_role(user, Role.TRIAL_MANAGER):
        roles.add(Role.TRIAL_MANAGER)
    return roles


def sites_for(*, user: User, trial: Trial) -> QuerySet[TrialSite]:
    """Sites of a trial the user may see: all of them for trial-wide roles, own sites otherwise."""
    qs = TrialSite.objects.filter(trial=trial).select_related("hospital", "trial")
    roles = trial_roles(user, trial)
    if roles & {str(r) for r in TRIAL_WIDE_ROLES}:
        return qs
    return qs.filter(hospital__in=hospital_ids_for(user, [Role.COORDINATOR]))


def coordinated_sites(*, user: User, trial: Trial) -> QuerySet[TrialSite]:
    return TrialSite.objects.filter(
        trial=trial, hospital__in=hospital_ids_for(user, [Role.COORDINATOR])
    ).select_related("hospital")


def subjects_for(user: User) -> QuerySet[Subject]:
    if not _active(user):
        return Subject.objects.none()
    visible = Q(site__hospital__in=hospital_ids_for(user, [Role.COORDINATOR])) | Q(
        trial__in=_trial_ids_with_role(user, TRIAL_WIDE_ROLES)
    )
    return (
        Subject.objects.filter(visible)
        .select_related("trial", "site__hospital")
        .annotate(case_count=Count("cases", distinct=True))
        .order_by("trial__protocol_number", "pseudonym")
    )


def cases_for(user: User) -> QuerySet[Case]:
    if not _active(user):
        return Case.objects.none()
    # On the case's own copies of its subject's trial and site: the count of a page needs no join (CasesByTrial).
    visible = Q(site__in=TrialSite.objects.filter(hospital__in=hospital_ids_for(user, [Role.COORDINATOR]))) | Q(
        trial__in=_trial_ids_with_role(user, TRIAL_WIDE_ROLES)
    )
    return (
        Case.objects.filter(visible)
        .select_related("subject__trial", "subject__site__hospital")
        .order_by("subject__trial__protocol_number", "subject__pseudonym", "visit_day", "laterality")
    )


CASE_ORDER_IN_TRIAL = ("subject__pseudonym", "visit_day", "laterality")


class CasesByTrial:
    """The cases of ``cases_for`` (filtered further if need be) in its order, paged one trial at a time.

    ``cases_for`` orders by trial protocol number, pseudonym, visit day and eye. One SQL sort of that order is a
    sort of every visible case (PostgreSQL cannot take it from an index: the keys live in three tables), 0.7 s for
    100,000 cases under load (bench_load). Within one trial the order is the index on (trial, pseudonym) and each
    subject's few cases, so a slice here asks each trial it spans for its rows in that order: the cost is the rows
    before the slice in that trial, not a sort of all of them. The same rows in the same order as ``cases_for``;
    ``count()`` is one grouped query (cases per trial and site) on the case's own trial and site columns, an
    index-only scan of their index (no join), and the protocol numbers of the trials it found; a slice is one
    query per trial it spans.

    Where every visible case of a trial is at one site (a coordinator's list, or a list filtered by site), the slice
    walks that site's subjects only (index on subject trial, site, pseudonym). Pseudonyms begin with the site's
    code, so in the trial's order each site is one block: walking the trial's subjects and dropping the other sites'
    cost a coordinator of a late site every other site's subjects, on every page (260 ms at 100,000 cases under
    bench_load). The extra filter on the subject's site drops no row: a case's site is its subject's (copied at
    creation, never changed), and the count just said that no other site has a visible case. Django's Paginator
    (and so DRF's page-number pagination) takes it as its object list."""

    ordered = True

    def __init__(self, cases: QuerySet[Case]) -> None:
        self._cases = cases
        self._per_trial: list[tuple[Any, int, set[Any]]] | None = None

    def per_trial(self) -> list[tuple[Any, int, set[Any]]]:
        """(trial id, visible cases, the sites they are at) in protocol-number order, trials without a visible
        case left out."""
        if self._per_trial is None:
            # count(*), not of the id, grouped on the case's own columns: the (trial, site) index alone answers it,
            # in its order, with no join (the protocol numbers, one row per trial, are asked for after it).
            rows = self._cases.order_by().values("trial_id", "site_id").annotate(n=Count("*"))
            per_trial: dict[Any, tuple[int, set[Any]]] = {}
            for row in rows:
                n, sites = per_trial.get(row["trial_id"], (0, set()))
                per_trial[row["trial_id"]] = (n + row["n"], sites | {row["site_id"]})
            # Ordered by the database (its collation), as cases_for orders them, not by Python's code points.
            order = Trial.objects.filter(pk__in=list(per_trial)).order_by("protocol_number", "pk")
            self._per_trial = [(trial_id, *per_trial[trial_id]) for trial_id in order.values_list("pk", flat=True)]
        return self._per_trial

    def count(self) -> int:
        return sum(n for _, n, _ in self.per_trial())

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list[Case]:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("CasesByTrial takes a slice (a page), not an index")
        start, stop = index.start or 0, index.stop if index.stop is not None else self.count()
        rows: list[Case] = []
        for trial_id, n, sites in self.per_trial():
            if stop <= 0:
                break
            if start < n:
                in_trial = self._cases.filter(subject__trial_id=trial_id)
                if len(sites) == 1:
                    in_trial = in_trial.filter(subject__site_id=next(iter(sites)))
                rows.extend(in_trial.order_by(*CASE_ORDER_IN_TRIAL)[start : min(stop, n)])
            start, stop = max(0, start - n), stop - n
        return rows


def subject_with_cases(subject_qs: QuerySet[Subject]) -> QuerySet[Subject]:
    return subject_qs.prefetch_related(Prefetch("cases", queryset=Case.objects.order_by("visit_day", "laterality")))


def accrual_for(trial: Trial) -> list[dict[str, Any]]:
    """Per site: target and the enrolment times of its subjects (withdrawn subjects still count)."""
    sites = list(TrialSite.objects.filter(trial=trial).select_related("hospital").order_by("hospital__code"))
    times: dict[Any, list[datetime]] = {site.pk: [] for site in sites}
    for site_id, enrolled_at in (
        Subject.objects.filter(trial=trial).order_by("enrolled_at").values_list("site_id", "enrolled_at")
    ):
        times[site_id].append(enrolled_at)
    return [
        {"site": site.hospital.code, "target": site.enrolment_target, "enrolled_at": times[site.pk]} for site in sites
    ]


def enrolled_counts(trial: Trial) -> dict[Any, dict[str, Any]]:
    rows = (
        Subject.objects.filter(trial=trial)
        .values("site_id")
        .annotate(total=Count("id"), withdrawn=Count("id", filter=Q(status=SubjectStatus.WITHDRAWN)))
    )
    return {row["site_id"]: dict(row) for row in rows}


def case_files_for(user: User) -> QuerySet[CaseFile]:
    """Files of the cases the user may see (same scoping as cases)."""
    return (
        CaseFile.objects.filter(case__in=cases_for(user).values("pk"))
        .select_related("case", "visual_field")
        .order_by("created_at")
    )


def active_files() -> QuerySet[CaseFile]:
    """The files that count: accepted, neither superseded nor withdrawn. The ONE place that says which files
    readers, models, training and exports use (``active_case_files`` for one case)."""
    return CaseFile.objects.filter(status=FileStatus.ACCEPTED)


def active_case_files(case: Case | Any) -> QuerySet[CaseFile]:
    """The active files of one case (``case`` is a Case or its primary key)."""
    return active_files().filter(case_id=case.pk if isinstance(case, Case) else case)


def case_checklist(case: Case) -> list[dict[str, Any]]:
    """What the trial expects of a case (its modalities), each with what the case's active files hold."""
    counts: dict[str, int] = {}
    gradable = 0
    for modality, is_gradable in active_case_files(case).values_list("modality", "gradable"):
        counts[modality] = counts.get(modality, 0) + 1
        gradable += modality == Modality.FUNDUS and is_gradable is True
    rows = []
    for modality in case.subject.trial.modalities:
        count = counts.get(modality, 0)
        present = count > 0 or (modality == Modality.OCT and case.oct_rnfl_thickness_um is not None)
        if modality == Modality.FUNDUS:
            detail = f"{count} photograph{'s' if count != 1 else ''}, {gradable} gradable" if count else "none yet"
        elif modality == Modality.OCT and not count and case.oct_rnfl_thickness_um is not None:
            detail = "RNFL thickness recorded"
        else:
            detail = f"{count} file{'s' if count != 1 else ''}" if count else "none yet"
        rows.append({"modality": modality, "label": Modality(modality).label, "present": present, "detail": detail})
    return rows
