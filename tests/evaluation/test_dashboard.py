"""The analysis dashboard page (issue 12, item 4): who may open it, what it shows, the figures it hands to
static/js/dashboard.js, and no inline script code."""

from __future__ import annotations

import json
import re

from django.test import TestCase
from django.urls import reverse

from evaluation.analysis import trial_analysis
from platform_core.accounts.models import Role
from tests.support.dashboard import DashboardStudy
from tests.support.factories import MembershipFactory

SCRIPT = re.compile(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script>", re.S)


class DashboardPageTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.study = DashboardStudy()
        cls.w = cls.study.w
        cls.url = reverse("evaluation:dashboard", args=[cls.w.trial.slug])

    def get(self, user):
        self.client.force_login(user)
        return self.client.get(self.url)

    def figures(self, response) -> dict:
        found = re.search(
            r'<script id="dashboard-figures" type="application/json">(.*?)</script>', response.content.decode(), re.S
        )
        self.assertIsNotNone(found)
        return json.loads(found.group(1))

    def test_managers_statisticians_and_monitors_see_it(self):
        for user in (self.w.statistician, self.w.monitor, self.w.manager):
            with self.subTest(user=user.email):
                response = self.get(user)
                self.assertEqual(response.status_code, 200)
                self.assertContains(response, "Analyses of")

    def test_readers_coordinators_and_outsiders_are_refused(self):
        for user in (self.w.reader, self.w.reader2, self.w.coord1, self.w.adjudicator):
            with self.subTest(user=user.email):
                self.assertEqual(self.get(user).status_code, 403)
        self.assertIn(self.get(self.w.outsider).status_code, (403, 404))
        self.client.logout()
        self.assertEqual(self.client.get(self.url).status_code, 302)

    def test_a_reader_who_is_also_a_statistician_is_refused(self):
        MembershipFactory(user=self.w.reader, hospital=self.w.h1, role=Role.STATISTICIAN)
        response = self.get(self.w.reader)
        self.assertEqual(response.status_code, 403)
        self.assertNotIn(b"AUC", response.content)

    def test_the_page_shows_the_analysis_figures(self):
        response = self.get(self.w.statistician)
        report = trial_analysis(self.w.trial)
        q = next(q for q in report["questions"] if q["key"] == "referable_dr")
        model = q["models"][0]
        self.assertContains(response, f"{model['auc']['auc']:.3f} ({model['auc']['ci95'][0]:.3f} to")
        self.assertContains(response, "The reference standard is locked.")
        self.assertContains(response, q["mrmc"]["unaided_vs_aided"]["power"]["sentence"])
        for row in q["readers"]:
            self.assertContains(response, f"<td>{row['reader']}</td><td>{row['group']}</td><td>{row['phase']}</td>")
        self.assertContains(response, "Breakdown by camera")
        self.assertContains(response, "dr-dash 1 vs dr-dash 2")

    def test_the_figures_hold_the_roc_with_every_reader_as_a_point(self):
        figures = self.figures(self.get(self.w.statistician))
        roc = figures["roc-referable_dr"]
        names = [trace["name"] for trace in roc["data"]]
        self.assertIn("dr-dash 1 high-sensitivity point", names)
        self.assertIn("dr-dash 2 high-specificity point", names)
        readers = [t for t in roc["data"] if t["name"].endswith(("unaided", "aided")) and "readers" in t["name"]]
        self.assertEqual(sorted(label for t in readers for label in t["text"]), sorted(["R01", "R02", "R03"] * 2))
        self.assertEqual({t["marker"]["symbol"] for t in readers}, {"circle", "diamond"})
        self.assertEqual(figures["confusion-0"]["data"][0]["type"], "heatmap")
        self.assertEqual(len(figures["confusion-0"]["data"][0]["z"]), 5)
        for name in ("kappa-referable_dr", "reliability-referable_dr", "drift", "progress", "accrual"):
            self.assertIn(name, figures)
        cartesian = {"scatter", "bar", "heatmap"}
        self.assertLessEqual({t["type"] for f in figures.values() for t in f["data"]}, cartesian)

    def test_no_inline_script_code(self):
        content = self.get(self.w.statistician).content.decode()
        scripts = list(SCRIPT.finditer(content))
        self.assertTrue(any("js/dashboard.js" in s["attrs"] for s in scripts))
        for script in scripts:
            if "src=" not in script["attrs"]:
                self.assertIn('type="application/json"', script["attrs"])

    def test_every_figure_has_its_element(self):
        response = self.get(self.w.statistician)
        elements = set(re.findall(r'data-dashboard-figure="([^"]+)"', response.content.decode()))
        self.assertEqual(elements, set(self.figures(response)))

    def test_the_trial_page_links_it_for_its_people_only(self):
        trial_url = reverse("trials:trial-detail", args=[self.w.trial.slug])
        self.client.force_login(self.w.statistician)
        self.assertContains(self.client.get(trial_url), self.url)
        self.client.force_login(self.w.reader)
        self.assertNotContains(self.client.get(trial_url), self.url)

    def test_post_is_refused(self):
        self.client.force_login(self.w.statistician)
        self.assertEqual(self.client.post(self.url).status_code, 405)
