"""An error report (what Django's AdminEmailHandler, or any reporter built on its ExceptionReporter, sends when a
request fails) never shows a password or token typed into the request that failed.

Each test breaks one step deep inside a sign-in, password or token path, lets the request fail with a 500 as in
production (DEBUG off), takes the ``django.request`` error record and renders its report as text and HTML: the
POST data and every traceback frame's local variables, where an unmarked password would sit in clear.
"""

from __future__ import annotations

import logging
from unittest import mock

from django.core import mail
from django.test import TestCase, override_settings
from django.urls import reverse
from django.views.debug import ExceptionReporter

from platform_core.accounts.models import User
from tests.support.factories import TEST_PASSWORD, UserFactory

NEW_PASSWORD = "Qz7-wRmK-new-secret-typed"


class Broken(RuntimeError):
    """A failure the request does not expect (a lost database connection, say)."""


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@override_settings(DEBUG=False)
class ErrorReportSecretTests(TestCase):
    def setUp(self):
        self.user = UserFactory(email="person@visus.example")
        self.user.set_password(TEST_PASSWORD)
        self.user.save()
        self.client.raise_request_exception = False
        self.handler = ErrorRecords()
        # The planted failures are expected: recorded here, kept out of the test log.
        logger = logging.getLogger("django.request")
        logger.addHandler(self.handler)
        self.addCleanup(setattr, logger, "propagate", logger.propagate)
        logger.propagate = False
        self.addCleanup(logger.removeHandler, self.handler)

    def report_of_the_failure(self, response) -> str:
        self.assertEqual(response.status_code, 500)
        records = [r for r in self.handler.records if r.exc_info and r.exc_info[0] is Broken]
        self.assertEqual(len(records), 1, "the request should have failed once, with the planted error")
        record = records[0]
        reporter = ExceptionReporter(record.request, *record.exc_info, is_email=True)
        text = reporter.get_traceback_text()
        self.assertIn("Broken", text)  # the report is of the planted failure, with its frames
        return text + reporter.get_traceback_html()

    def assert_not_in_report(self, secrets: list[str], response) -> None:
        report = self.report_of_the_failure(response)
        for secret in secrets:
            at = report.find(secret)
            self.assertEqual(at, -1, f"a typed secret is in the error report: ...{report[max(0, at - 300) : at]}")

    @override_settings(ADMINS=[("Ops", "ops@visus.example")])
    def test_a_failed_request_is_logged_but_never_mailed(self):
        """Django's default mails ADMINS the report, with every frame's locals (an upload's bytes before
        de-identification among them); Visus only logs it."""
        self.client.force_login(self.user)
        with mock.patch("platform_core.accounts.services.audited_save", side_effect=Broken):
            response = self.client.post(
                reverse("accounts:password-change"),
                {"old_password": TEST_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
            )
        self.report_of_the_failure(response)
        self.assertEqual(mail.outbox, [])

    def test_a_failed_password_change_reports_neither_password(self):
        self.client.force_login(self.user)
        with mock.patch("platform_core.accounts.services.audited_save", side_effect=Broken):
            response = self.client.post(
                reverse("accounts:password-change"),
                {"old_password": TEST_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
            )
        self.assert_not_in_report([TEST_PASSWORD, NEW_PASSWORD], response)

    def test_a_failed_sign_in_reports_no_password(self):
        with mock.patch("platform_core.accounts.backends.login_failure_record", side_effect=Broken):
            response = self.client.post(
                reverse("accounts:login"), {"username": "person@visus.example", "password": NEW_PASSWORD}
            )
        self.assert_not_in_report([NEW_PASSWORD], response)

    def test_a_failed_token_request_reports_no_password(self):
        with mock.patch("platform_core.api.views.api_token_issue", side_effect=Broken):
            response = self.client.post(
                "/api/v1/auth/token/", {"email": "person@visus.example", "password": TEST_PASSWORD}
            )
        self.assert_not_in_report([TEST_PASSWORD], response)

    def test_a_failed_token_request_with_a_json_body_reports_no_password(self):
        with mock.patch("platform_core.api.views.api_token_issue", side_effect=Broken):
            response = self.client.post(
                "/api/v1/auth/token/",
                {"email": "person@visus.example", "password": TEST_PASSWORD},
                content_type="application/json",
            )
        self.assert_not_in_report([TEST_PASSWORD], response)

    def test_a_failed_admin_user_add_reports_no_password(self):
        root = User.objects.create_superuser(email="root@visus.example", password=TEST_PASSWORD, full_name="Root")
        self.client.force_login(root)
        with mock.patch("platform_core.accounts.services.audited_save", side_effect=Broken):
            response = self.client.post(
                reverse("admin:accounts_user_add"),
                {
                    "email": "new@visus.example",
                    "full_name": "New",
                    "password1": NEW_PASSWORD,
                    "password2": NEW_PASSWORD,
                },
            )
        self.assert_not_in_report([NEW_PASSWORD], response)

    def test_a_failed_admin_password_set_reports_no_password(self):
        root = User.objects.create_superuser(email="root@visus.example", password=TEST_PASSWORD, full_name="Root")
        self.client.force_login(root)
        with mock.patch("platform_core.accounts.services.audited_save", side_effect=Broken):
            response = self.client.post(
                reverse("admin:accounts_user_password_change", args=[self.user.pk]),
                {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "reason": "reset"},
            )
        self.assert_not_in_report([NEW_PASSWORD], response)
