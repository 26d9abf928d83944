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


class HostileJsonTests(TestCase):
    """JSON nested 100,000 deep is a 400 in the error envelope, signed in or not (it was a RecursionError 500)."""

    def test_deeply_nested_json_is_a_clean_400_on_sign_in_and_on_a_signed_in_endpoint(self):
        body = "[" * 100_000 + "]" * 100_000
        self.client.raise_request_exception = False
        response = self.client.post("/api/v1/auth/token/", data=body, content_type="application/json")
        self.assertEqual(response.status_code, 400, response.content[:200])
        self.assertEqual(response.json()["error"]["code"], "parse_error")
        self.assertIn("nested too deeply", response.json()["error"]["message"])
        w = TrialWorld()
        self.client.force_login(w.coord1)
        nested = '{"a":' * 100_000 + "1" + "}" * 100_000
        response = self.client.post(
            f"/api/v1/subjects/{w.subject1.pk}/withdraw/", data=nested, content_type="application/json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("nested too deeply", response.json()["error"]["message"])

    def test_ordinary_json_still_parses(self):
        response = self.client.post(
            "/api/v1/auth/token/",
            data={"email": "nobody@visus.example", "password": "x"},
            content_type="application/json",
        )
        self.assertIn(response.status_code, {400, 401})
        self.assertNotEqual(response.json()["error"]["code"], "parse_error")


class ClientErrorLoggingTests(TestCase):
    """A 403 or 404 is logged as one line (no traceback to flood the logs with); a 500 keeps its traceback."""

    def test_forbidden_and_not_found_are_logged_without_a_traceback(self):
        w = TrialWorld()
        self.client.force_login(w.reader)  # a reader may not open a subject's page: PermissionDenied
        with self.assertLogs("django.request", "WARNING") as logs:
            response = self.client.get(f"/trials/{w.trial.slug}/subjects/{w.subject1.pseudonym}/")
            self.client.get("/no-such-page/")
        self.assertEqual(response.status_code, 403)
        self.assertTrue(logs.records)
        for record in logs.records:
            self.assertIsNone(record.exc_info, record.getMessage())
            self.assertNotIn("Traceback", logs.output[logs.records.index(record)])

    def test_a_server_error_keeps_its_traceback(self):
        w = TrialWorld()
        self.client.force_login(w.coord1)
        self.client.raise_request_exception = False
        with (
            mock.patch("trials.apis.CaseListApi.get_queryset", side_effect=RuntimeError("boom")),
            self.assertLogs("django.request", "ERROR") as logs,
        ):
            self.client.get("/api/v1/cases/")
        self.assertIsNotNone(logs.records[0].exc_info)


class ApiEnvelopeEdgeTests(TestCase):
    """Errors Django raises before any view still answer in the JSON envelope under /api/ (issue 13)."""

    def test_an_oversized_body_is_a_json_400(self):
        self.client.raise_request_exception = False
        body = '{"email": "' + "x" * (11 * 1024 * 1024) + '"}'
        with self.assertLogs("django.security", "ERROR"):
            response = self.client.post("/api/v1/auth/token/", data=body, content_type="application/json")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response["Content-Type"], "application/json")
        self.assertEqual(response.json()["error"]["status"], 400)

    def test_a_bad_host_header_is_a_json_400(self):
        self.client.raise_request_exception = False
        with self.assertLogs("django.security", "ERROR"):
            response = self.client.get("/api/v1/me/", HTTP_HOST="evil.example")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response["Content-Type"], "application/json")
        self.assertEqual(response.json()["error"]["code"], "bad_request")
