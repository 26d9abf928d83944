"""Errors under /api/ are always the JSON error envelope, even where Django answers (unknown URL, crash)."""

from unittest import mock

from django.test import TestCase

from tests.support.factories import TrialWorld


class ApiErrorPagesTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.client.force_login(self.w.coord1)

    def test_an_unknown_api_url_is_a_json_404(self):
        response = self.client.get("/api/v1/no-such-endpoint/")
        self.assertEqual(response.status_code, 404)
        self.assertEqual(response["Content-Type"], "application/json")
        self.assertEqual(response.json()["error"]["code"], "not_found")
        page = self.client.get("/no-such-page/")
        self.assertEqual(page.status_code, 404)
        self.assertIn("text/html", page["Content-Type"])

    def test_a_crash_is_a_json_500_that_tells_nothing_of_the_cause(self):
        self.client.raise_request_exception = False
        with (
            mock.patch("trials.apis.CaseListApi.get_queryset", side_effect=RuntimeError("secret detail DR01-H01")),
            self.assertLogs("django.request", "ERROR"),  # logged for the operators, not shown to the client
        ):
            response = self.client.get("/api/v1/cases/")
        self.assertEqual(response.status_code, 500)
        self.assertEqual(response.json()["error"]["code"], "server_error")
        self.assertNotIn("secret detail", response.content.decode())
