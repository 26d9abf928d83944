"""What the audit trail shows of trials' objects: filters by subject and case, and labels with links instead of
keys. Registered with the audit app in ``TrialsConfig.ready()`` (the audit app sits below trials). Every lookup
goes through the trials selectors, so a reviewer gets labels and filters only for what they may see."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from django.db.models import Q
from django.urls import reverse

from platform_core.accounts.models import User
from platform_core.audit.selectors import AuditObjectFilter, ObjectLink
from trials.models import Case, CaseFile, ReferenceStandard
from trials.selectors import case_files_for, cases_for, subjects_for, trials_for

CASE_LABEL = re.compile(r"^(?P<pseudonym>\S+)\s+(?P<eye>OD|OS)\s+day\s+(?P<day>\d+)$", re.IGNORECASE)


def _about(object_type: str, ids: Iterable[object]) -> Q:
    return Q(object_type=object_type, object_id__in=[str(i) for i in ids])


def _case_events(case_ids: list[uuid.UUID]) -> Q:
    """Events about these cases, their files, reference standards and data queries."""
    from trials.models import DataQuery

    files = CaseFile.objects.filter(case__in=case_ids).values_list("pk", flat=True)
    references = ReferenceStandard.objects.filter(case__in=case_ids).values_list("pk", flat=True)
    queries = DataQuery.objects.filter(case__in=case_ids).values_list("pk", flat=True)
    return (
        _about("trials.case", case_ids)
        | _about("trials.casefile", files)
        | _about("trials.referencestandard", references)
        | _about("trials.dataquery", queries)
    )


def subject_events(user: User, value: str) -> Q | None:
    subject = subjects_for(user).filter(pseudonym__iexact=value).first()
    if subject is None:
        return None
    case_ids = list(Case.objects.filter(subject=subject).values_list("pk", flat=True))
    return _about("trials.subject", [subject.pk]) | _case_events(case_ids)


def case_events(user: User, value: str) -> Q | None:
    cases = cases_for(user)
    match = CASE_LABEL.match(value)
    if match:
        case = cases.filter(
            subject__pseudonym__iexact=match["pseudonym"],
            laterality=match["eye"].upper(),
            visit_day=int(match["day"]),
        ).first()
    else:
        try:
            case = cases.filter(pk=uuid.UUID(value)).first()
        except ValueError:
            case = None
    return None if case is None else _case_events([case.pk])


SUBJECT_FILTER = AuditObjectFilter(
    name="subject", label="Subject", help_text="Pseudonym, e.g. DR01-H01-0001.", to_q=subject_events
)
CASE_FILTER = AuditObjectFilter(
    name="case", label="Case", help_text='As the case page names it, e.g. "DR01-H01-0001 OD day 0".', to_q=case_events
)


def subject_links(user: User, ids: list[str]) -> dict[str, ObjectLink]:
    subjects = subjects_for(user).filter(pk__in=ids)
    return {
        str(s.pk): ObjectLink(s.pseudonym, reverse("trials:subject-detail", args=[s.trial.slug, s.pseudonym]))
        for s in subjects
    }


def _case_link(case: Case, prefix: str = "") -> ObjectLink:
    return ObjectLink(f"{prefix}{case.subject.pseudonym} {case.label}", reverse("trials:case-detail", args=[case.pk]))


def case_links(user: User, ids: list[str]) -> dict[str, ObjectLink]:
    return {str(c.pk): _case_link(c) for c in cases_for(user).filter(pk__in=ids)}


def case_file_links(user: User, ids: list[str]) -> dict[str, ObjectLink]:
    files = case_files_for(user).filter(pk__in=ids).select_related("case__subject")
    return {str(f.pk): _case_link(f.case, f"{f.get_modality_display()} of ") for f in files}


def reference_links(user: User, ids: list[str]) -> dict[str, ObjectLink]:
    references = ReferenceStandard.objects.filter(pk__in=ids, case__in=cases_for(user).values("pk"))
    return {str(r.pk): _case_link(r.case, "Reference standard of ") for r in references.select_related("case__subject")}


def trial_links(user: User, ids: list[str]) -> dict[str, ObjectLink]:
    return {
        str(t.pk): ObjectLink(f"{t.protocol_number} {t.title}", reverse("trials:trial-detail", args=[t.slug]))
        for t in trials_for(user).filter(pk__in=ids)
    }


def site_links(user: User, ids: list[str]) -> dict[str, ObjectLink]:
    from trials.models import TrialSite

    sites = TrialSite.objects.filter(pk__in=ids, trial__in=trials_for(user).values("pk")).select_related(
        "trial", "hospital"
    )
    return {
        str(s.pk): ObjectLink(
            f"{s.hospital.code} {s.hospital.name} in {s.trial.protocol_number}",
            reverse("trials:trial-detail", args=[s.trial.slug]),
        )
        for s in sites
    }


LABELLERS = {
    "trials.subject": subject_links,
    "trials.case": case_links,
    "trials.casefile": case_file_links,
    "trials.referencestandard": reference_links,
    "trials.trial": trial_links,
    "trials.trialsite": site_links,
}


def data_query_links(user: User, ids: list[str]) -> dict[str, ObjectLink]:
    from trials.monitoring import data_queries_for

    return {str(q.pk): _case_link(q.case, "Data query on ") for q in data_queries_for(user).filter(pk__in=ids)}


LABELLERS["trials.dataquery"] = data_query_links
