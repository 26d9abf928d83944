"""Query-count pin of the dashboard page (issue 13, item 10: bench_load requests it with 1,000,000 reads): the same
number of queries for ten cases as for forty, with every reader's reads of both phases, references and
predictions, both when the stored analyses are served (the reads read once, by the fingerprint's indexed query) and
when they are computed again. The case list API and the next case are pinned in tests/trials/test_trials_api.py and
tests/reading/test_queries.py."""

from __future__ import annotations

import re

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from diagnosis.models import InferenceJob, Prediction
from evaluation.models import AnalysisSnapshot
from reading.models import Read, ReaderAssignment
from tests.support.dashboard import DashboardStudy
from trials.models import Case, ReferenceStandard, Subject

# Data unchanged since the stored analyses (evaluation.snapshots): session and user, trial and its roles, the
# fingerprint (one aggregate query), the stored snapshot, the page's navigation.
CACHED_QUERIES = 12
# Data changed, a small trial computes in the request: the fingerprint and the snapshot, then in one transaction the
# fingerprint again and the analyses' aggregate queries (cases, assignments, reads, calibration, predictions,
# subgroups, set-up), and the snapshot stored (locked read and update, each in its savepoint).
COMPUTING_QUERIES = 27


class DashboardQueryPinTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.study = DashboardStudy()
        cls.w = cls.study.w
        cls.url = reverse("evaluation:dashboard", args=[cls.w.trial.slug])

    def count(self, *, stored: bool) -> int:
        self.client.force_login(self.w.statistician)
        self.client.get(self.url)  # warm: the session's first request may write it; it stores the analyses
        if not stored:
            AnalysisSnapshot.objects.filter(trial=self.w.trial).update(fingerprint="")
        with CaptureQueriesContext(connection) as ctx:
            response = self.client.get(self.url)
        self.assertEqual(response.status_code, 200)
        if stored:  # the reads are read once, by the fingerprint's aggregate: no analysis query
            self.assertEqual(sum(bool(re.search(r"\breading_read\b", q["sql"])) for q in ctx.captured_queries), 1)
        return len(ctx.captured_queries)

    def grow(self, cases: int) -> None:
        """``cases`` more complete cases, each read and signed by every reader in both phases, with a reference
        grade and a prediction of each model version (rows written directly: the services are not measured)."""
        w = self.w
        site = Subject.objects.filter(trial=w.trial).first().site
        now = timezone.now()
        subjects = Subject.objects.bulk_create(
            Subject(
                trial=w.trial,
                site=site,
                pseudonym=f"GROW-{n:04d}",
                number=1000 + n,
                enrolled_at=now,
                enrolled_by=w.coord1,
                consent_days_before_enrolment=0,
                consent_form_version="v1",
                sex="female",
                age="61",
                diabetes_type="type2",
            )
            for n in range(cases)
        )
        made = Case.objects.bulk_create(
            Case(subject=s, trial=s.trial, site=s.site, laterality="OD", visit_day=0, status="complete")
            for s in subjects
        )
        ReferenceStandard.objects.bulk_create(
            ReferenceStandard(case=c, icdr_grade=n % 5, source="imported") for n, c in enumerate(made)
        )
        for model in self.study.models:
            jobs = InferenceJob.objects.bulk_create(
                InferenceJob(case=c, model_version=model, status="succeeded") for c in made
            )
            Prediction.objects.bulk_create(
                Prediction(job=j, case=j.case, model_version=model, runtime_ms=1.0, referable_probability=0.5, grade=2)
                for j in jobs
            )
        for assignment in ReaderAssignment.objects.filter(trial=w.trial):
            last = Read.objects.filter(assignment=assignment).order_by("-number").first().number
            Read.objects.bulk_create(
                Read(
                    assignment=assignment,
                    reader=assignment.reader,
                    case=c,
                    phase=assignment.phase,
                    number=last + 1 + n,
                    status="signed",
                    answers={"icdr_grade": "2", "referable_dr": "yes", "confidence": 60},
                    confidences={"icdr_grade": 60, "referable_dr": 60},
                    signed_at=now,
                    signature_name=assignment.reader.full_name,
                    signature_meaning="read",
                )
                for n, c in enumerate(made)
            )

    def test_the_dashboard_queries_do_not_grow_with_cases_and_reads(self):
        reads = Read.objects.filter(status="signed").count()
        self.assertEqual(self.count(stored=False), COMPUTING_QUERIES)
        self.assertEqual(self.count(stored=True), CACHED_QUERIES)
        self.grow(30)
        self.assertEqual(Read.objects.filter(status="signed").count(), reads + 30 * 6)
        self.assertEqual(self.count(stored=False), COMPUTING_QUERIES)
        self.assertEqual(self.count(stored=True), CACHED_QUERIES)
