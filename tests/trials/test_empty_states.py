"""Empty lists say why they are empty and what the person's role can do about it (issue 10, item 9)."""

from __future__ import annotations

from django.test import TestCase

from tests.support.factories import TrialWorld, enrol, make_trial


class EmptyStateTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()
        cls.draft = make_trial(manager=cls.w.manager, slug="no-sites", prefix="NS01", recruiting=False)
        cls.fresh = make_trial(manager=cls.w.manager, slug="fresh", prefix="FR01", hospitals=[cls.w.h1])

    def empty_text(self, user, url, testid):
        self.client.force_login(user)
        response = self.client.get(url)
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        start = html.index(f'data-testid="{testid}"')
        return html[start : html.index("</td>", start)]

    def test_a_manager_is_told_to_add_sites(self):
        text = self.empty_text(self.w.manager, "/trials/no-sites/", "sites-empty")
        self.assertIn("add the hospitals that will recruit with “Add site”", text)

    def test_a_reader_is_told_why_no_site_shows_and_where_to_read(self):
        self.client.force_login(self.w.reader)
        html = self.client.get(f"/trials/{self.w.trial.slug}/").content.decode()
        start = html.index('data-testid="reader-note"')
        note = html[start : html.index("</p>", start)]
        self.assertIn("To keep your reads blind, this page shows no sites", note)
        self.assertIn('href="/reading/" data-testid="worklist-link"', html)
        self.assertNotIn("No sites yet", html)

    def test_a_coordinator_who_can_enrol_is_led_to_the_enrolment_form(self):
        text = self.empty_text(self.w.coord1, "/trials/fresh/subjects/", "subjects-empty")
        self.assertIn('href="/trials/fresh/subjects/enrol/"', text)

    def test_a_monitor_is_told_who_enrols(self):
        text = self.empty_text(self.w.monitor, "/trials/fresh/subjects/", "subjects-empty")
        self.assertIn("the coordinators at the trial's sites enrol them", text)
        self.assertNotIn("enrol/", text)

    def test_a_subject_without_cases_says_who_adds_them(self):
        subject = enrol(coordinator=self.w.coord1, trial=self.w.trial, hospital=self.w.h1)
        url = f"/trials/{self.w.trial.slug}/subjects/{subject.pseudonym}/"
        self.assertIn("add the first visit", self.empty_text(self.w.coord1, url, "cases-empty"))
        self.assertIn("the coordinators at H01 add them", self.empty_text(self.w.monitor, url, "cases-empty"))
