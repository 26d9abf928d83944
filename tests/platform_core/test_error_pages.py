"""The branded error pages (400, 403, 404, 500): the site's navigation, what happened and what to do next."""

from unittest import mock

from django.test import TestCase, override_settings

from platform_core import urls
from tests.support.factories import TrialWorld


class ErrorPageTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def assert_branded(self, response, status):
        self.assertEqual(response.status_code, status)
        self.assertIn("text/html", response["Content-Type"])
        html = response.content.decode()
        self.assertIn('class="site-header"', html)  # extends base.html
        self.assertIn(f'data-status="{status}"', html)
        self.assertIn("What you can do", html)
        self.assertIn('href="/"', html)
        return html

    def test_the_handlers_are_the_branded_ones(self):
        for code in (400, 403, 404, 500):
            self.assertTrue(getattr(urls, f"handler{code}").startswith("platform_core.errorpages."))

    def test_not_found_keeps_the_navigation_of_the_signed_in_user(self):
        self.client.force_login(self.w.coord1)
        html = self.assert_branded(self.client.get("/trials/no-such-trial/"), 404)
        self.assertIn("There is no such page", html)
        self.assertNotIn("no-such-trial", html)  # the path is not echoed (it may name another site's subject)
        self.assertIn('aria-label="Main"', html)  # the navigation
        self.assertIn('href="/trials/"', html)

    def test_a_reader_on_a_case_page_is_told_to_read_from_the_worklist(self):
        self.client.force_login(self.w.reader)
        html = self.assert_branded(self.client.get(f"/trials/cases/{self.w.case1.pk}/"), 403)
        self.assertIn("As a reader you read cases from your worklist", html)
        self.assertIn('href="/reading/" data-testid="worklist-link"', html)
        self.assertIn("Your role does not give access to this page.", html)

    def test_other_roles_are_told_who_gives_access(self):
        self.client.force_login(self.w.statistician)
        html = self.assert_branded(self.client.get(f"/trials/{self.w.trial.slug}/subjects/enrol/"), 403)
        self.assertIn("ask your trial manager to give you the role", html)
        self.assertNotIn("worklist-link", html)

    def test_a_bad_request_is_branded(self):
        with self.assertLogs("django.security", "ERROR"):
            response = self.client.get("/", headers={"host": "attacker.example"})
        html = self.assert_branded(response, 400)
        self.assertIn("Nothing was saved", html)

    def test_a_crash_is_branded_and_does_not_need_the_failing_parts(self):
        # The navigation's context processor itself fails: the 500 page is rendered without it.
        self.client.force_login(self.w.coord1)
        self.client.raise_request_exception = False
        with (
            mock.patch("platform_core.accounts.context_processors.items_for", side_effect=RuntimeError("db down")),
            self.assertLogs("django.request", "ERROR"),
        ):
            response = self.client.get("/")
        html = self.assert_branded(response, 500)
        self.assertIn("Something went wrong on our side", html)
        self.assertNotIn("db down", html)

    @override_settings(DEBUG=False)
    def test_api_errors_stay_in_the_envelope(self):
        self.client.force_login(self.w.reader)
        response = self.client.get("/api/v1/no-such-endpoint/")
        self.assertEqual(response.json()["error"]["code"], "not_found")


class ExpiredFormPageTests(TestCase):
    def test_a_form_without_its_csrf_token_gets_the_branded_page(self):
        from django.test import Client

        with self.assertLogs("django.security.csrf", "WARNING"):
            response = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "x", "password": "y"})
        self.assertEqual(response.status_code, 403)
        html = response.content.decode()
        self.assertIn('class="site-header"', html)
        self.assertIn("This form has expired", html)
        self.assertIn("Nothing was saved", html)
