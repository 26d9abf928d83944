"""The case list's pages (CasesByTrial, issue 13 item 10): the same cases in the same order as ``cases_for`` (trial
protocol number, pseudonym, visit day, eye), whatever slice, across trials, for trial-wide roles and coordinators."""

from __future__ import annotations

from unittest import mock

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from rest_framework.pagination import PageNumberPagination
from rest_framework.test import APIClient

from platform_core.accounts.models import Role
from tests.support.factories import MembershipFactory, TrialWorld, enrol, make_trial, member
from trials.selectors import CasesByTrial, cases_for
from trials.services import case_create

SITE_FILTER = r'"trials_subject"\."site_id" = \'[0-9a-f-]+\''  # the subject's site as a value, not the join


class CasePagingTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        w = cls.w = TrialWorld()  # protocol P-dr-trial
        # Created second but first in protocol order: the pages must follow the protocol number, not creation.
        cls.early = make_trial(manager=w.manager, slug="aa-trial", prefix="AA01", hospitals=[w.h1, w.h2])
        for trial in (w.trial, cls.early):
            for hospital, coordinator in ((w.h2, w.coord2), (w.h1, w.coord1)):
                for _ in range(2):
                    subject = enrol(coordinator=coordinator, trial=trial, hospital=hospital)
                    for day in (7, 0):
                        for eye in ("OS", "OD"):
                            case_create(actor=coordinator, subject=subject, laterality=eye, visit_day=day)

    def test_every_slice_matches_the_sorted_list(self):
        for user in (self.w.monitor, self.w.coord1):
            expected = list(cases_for(user))
            pages = CasesByTrial(cases_for(user))
            self.assertEqual(pages.count(), len(expected))
            self.assertGreater(len({c.subject.trial_id for c in expected}), 1)
            for size in (1, 3, 7, len(expected)):
                with self.subTest(user=user.email, size=size):
                    walked = [c for start in range(0, len(expected), size) for c in pages[start : start + size]]
                    self.assertEqual([c.pk for c in walked], [c.pk for c in expected])
            self.assertEqual(pages[len(expected) : len(expected) + 5], [])

    def test_one_site_or_several(self):
        """A coordinator of both sites (several sites per trial), and a trial-wide role's list filtered by one site
        (one site per trial, as a coordinator's): the same rows in the same order as the sorted list."""
        both = member(Role.COORDINATOR, self.w.h1, email="both-sites@visus.example")
        MembershipFactory(user=both, hospital=self.w.h2, role=Role.COORDINATOR)
        for cases in (cases_for(both), cases_for(self.w.monitor).filter(site__hospital=self.w.h2)):
            expected = list(cases)
            pages = CasesByTrial(cases)
            self.assertEqual(pages.count(), len(expected))
            for size in (1, 3, 5):
                walked = [c for start in range(0, len(expected), size) for c in pages[start : start + size]]
                self.assertEqual([c.pk for c in walked], [c.pk for c in expected])

    def test_a_page_of_one_site_walks_that_sites_subjects(self):
        """Where a trial's visible cases are all at one site, its page asks for that site's subjects (the index on
        subject trial, site, pseudonym), not every subject of the trial; several sites, no such filter."""

        def page_sql(user) -> list[str]:
            with CaptureQueriesContext(connection) as queries:
                CasesByTrial(cases_for(user))[6:10]
            return [q["sql"] for q in queries.captured_queries if "LIMIT" in q["sql"]]

        one_site = page_sql(self.w.coord2)
        self.assertEqual(len(one_site), 2)  # the slice spans both trials (8 cases of coord2's in each)
        for sql in one_site:
            self.assertRegex(sql, SITE_FILTER)
        for sql in page_sql(self.w.monitor):
            self.assertNotRegex(sql, SITE_FILTER)

    def test_the_order_is_protocol_pseudonym_visit_and_eye(self):
        cases = CasesByTrial(cases_for(self.w.monitor))[0:100]
        keys = [(c.subject.trial.protocol_number, c.subject.pseudonym, c.visit_day, c.laterality) for c in cases]
        self.assertEqual(keys, sorted(keys))
        self.assertEqual(keys[0][0], "P-aa-trial")

    @mock.patch.object(PageNumberPagination, "page_size", 4)
    def test_the_api_pages_walk_the_same_list(self):
        api = APIClient()
        api.force_authenticate(self.w.monitor)
        expected = [str(c.pk) for c in cases_for(self.w.monitor)]
        walked, url = [], "/api/v1/cases/"
        while url:
            body = api.get(url).json()
            self.assertEqual(body["count"], len(expected))
            walked += [row["id"] for row in body["results"]]
            url = body["next"]
        self.assertEqual(walked, expected)
        filtered = api.get("/api/v1/cases/", {"trial": "aa-trial", "page": 2}).json()
        self.assertEqual(filtered["count"], 16)
        self.assertEqual([r["trial"] for r in filtered["results"]], ["aa-trial"] * 4)
        self.assertEqual(api.get("/api/v1/cases/", {"page": 99}).status_code, 404)
