"""Every form page of the app, as each role that may open it, empty and after an empty submit: every ARIA id
reference (aria-describedby, aria-labelledby...) and every label ``for`` names an element of the page, and a
submit with errors shows the error summary. Pages are found by walking the URL patterns (tests.support.pages), so
a form added later is checked too."""

from __future__ import annotations

from django.test import Client, TestCase

from tests.support.page_world import PageWorld
from tests.support.pages import dangling_references, has_form, html_pages, self_posting_forms


class FormMarkupWalkTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = PageWorld()

    @classmethod
    def tearDownClass(cls):
        cls.w.delete_files()
        super().tearDownClass()

    def test_every_aria_reference_on_every_form_page_names_an_element(self):
        problems, form_pages, posted = [], [], []
        for person in self.w.people:
            client = Client()
            client.force_login(person)
            for _user, path in html_pages([person], self.w.values):
                html = client.get(path).content.decode()
                if not has_form(html):
                    continue
                form_pages.append(path)
                problems += [f"GET {path} as {person.email}: {ref}" for ref in dangling_references(html)]
                if self_posting_forms(html):
                    response = client.post(path, {})
                    if response.status_code == 200:
                        posted.append(path)
                        problems += [
                            f"POST {path} as {person.email}: {ref}"
                            for ref in dangling_references(response.content.decode())
                        ]
        self.maxDiff = None
        self.assertEqual(problems, [])
        # The walk reached the forms it exists for (and their error states).
        for expected in (f"/trials/{self.w.trial.slug}/subjects/enrol/", "/trials/new/", "/accounts/password/"):
            self.assertIn(expected, form_pages)
            self.assertIn(expected, posted)
        self.assertIn(f"/trials/cases/{self.w.case1.pk}/", form_pages)
        self.assertIn(f"/reading/reads/{self.w.read.pk}/", form_pages)

    def test_the_check_would_catch_a_help_text_linked_to_a_missing_id(self):
        html = '<p id="id_age_helptext">x</p><input aria-describedby="id_age_help" id="id_age"><label for="id_sex">'
        self.assertEqual(dangling_references(html), ['<input aria-describedby="id_age_help">', '<label for="id_sex">'])

    def test_help_texts_are_linked_to_the_ids_django_describes_them_with(self):
        self.client.force_login(self.w.coord1)
        html = self.client.get(f"/trials/{self.w.trial.slug}/subjects/enrol/").content.decode()
        self.assertIn('aria-describedby="id_age_helptext"', html)
        self.assertIn('id="id_age_helptext"', html)


class ErrorSummaryTests(TestCase):
    """All errors of a submit at once, in a summary at the top that links to each field."""

    @classmethod
    def setUpTestData(cls):
        from tests.support.factories import TrialWorld

        cls.w = TrialWorld()

    def test_an_empty_enrolment_lists_every_problem_at_once(self):
        self.client.force_login(self.w.coord1)
        url = f"/trials/{self.w.trial.slug}/subjects/enrol/"
        token = self.client.get(url).context["form"].initial["submission_token"]
        response = self.client.post(url, {"submission_token": token})
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        start = html.rindex("<div", 0, html.index("data-error-summary"))
        summary = html[start : html.index("</div>", start)]
        for expected in (
            'href="#id_sex"',
            "Choose the subject&#x27;s sex.",
            'href="#id_diabetes_type"',
            'href="#id_age"',
            "Record the date the subject gave consent.",
            "Record the version of the consent form signed.",
            'href="#id_inclusion_0-label"',
            "Inclusion criterion not answered.",
            'href="#id_exclusion_0-label"',
            "Exclusion criterion not answered.",
        ):
            self.assertIn(expected, summary)
        self.assertIn("There are 9 problems", summary)
        self.assertIn('tabindex="-1"', summary)

    def test_the_summary_is_absent_when_there_is_nothing_wrong(self):
        self.client.force_login(self.w.coord1)
        self.assertNotContains(self.client.get(f"/trials/{self.w.trial.slug}/subjects/enrol/"), "data-error-summary")

    def test_an_empty_sign_in_lists_both_fields_in_the_summary(self):
        from django.core.cache import cache

        cache.clear()  # the sign-in throttle
        html = self.client.post("/accounts/login/", {}).content.decode()
        start = html.index("data-error-summary")
        summary = html[start : html.index("</div>", start)]
        self.assertIn('href="#id_username"', summary)
        self.assertIn('href="#id_password"', summary)
