"""What a hostile review of this round found, each fixed: a manager could make themselves a reader and keep the
pages that show the answers; the audit trail showed reads and the reference to someone who reads; a gate exception
reason had no length limit; invitation tokens reached the logs."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.test import SimpleTestCase, TestCase
from django.urls import reverse

from platform_core.accounts.models import Role
from platform_core.accounts.services import person_role_grant
from platform_core.audit.models import AuditEvent
from platform_core.audit.selectors import audit_events_for
from platform_core.errors import ApplicationError
from platform_core.log_filters import RedactInvitationTokens
from reading import services
from tests.support.reading import GOOD, PASSWORD, ReadingWorld
from tests.support.uploads import vf_csv
from trials.file_services import case_file_upload


class ManagerWhoReadsTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()

    def test_a_manager_cannot_grant_themselves_a_role(self):
        with self.assertRaisesMessage(ValidationError, "cannot grant yourself a role"):
            person_role_grant(
                actor=self.w.manager, user=self.w.manager, hospital=self.w.h1, role=Role.READER, reason="x"
            )

    def test_a_manager_who_also_reads_is_refused_the_reading_management_pages_and_services(self):
        from platform_core.accounts.services import membership_grant

        membership_grant(actor=None, user=self.w.manager, hospital=self.w.h1, role=Role.READER)
        self.client.force_login(self.w.manager)
        for name in ("reading:calibration", "reading:reference", "reading:reset", "reading:manage"):
            with self.subTest(page=name):
                response = self.client.get(reverse(name, args=[self.w.trial.slug]))
                self.assertIn(response.status_code, {403, 404})
        with self.assertRaisesMessage(ApplicationError, "another trial manager manages its reading"):
            services.calibration_case_mark(actor=self.w.manager, case=self.w.case1, known_answers={"icdr_grade": "0"})

    def test_the_audit_trail_hides_a_trial_from_a_reviewer_who_reads_in_it(self):
        from platform_core.accounts.services import membership_grant

        monitor = self.w.monitor
        self.assertTrue(audit_events_for(monitor).filter(trial_ref=self.w.trial.slug).exists())
        membership_grant(actor=None, user=monitor, hospital=self.w.h1, role=Role.READER)
        self.assertFalse(audit_events_for(monitor).filter(trial_ref=self.w.trial.slug).exists())
        self.client.force_login(monitor)
        page = self.client.get("/audit/export.csv")
        body = b"".join(page.streaming_content) if page.streaming else page.content
        self.assertNotIn("Reference standard", body.decode())
        self.assertNotIn("read.draft_save", body.decode())


class GateReasonLimitTests(TestCase):
    def test_a_gate_exception_reason_over_500_characters_is_refused_and_stores_nothing(self):
        from tests.support.factories import TrialWorld

        w = TrialWorld(modalities=("fundus", "visual_field"))
        before = AuditEvent.objects.count()
        with self.assertRaisesMessage(ValidationError, "under 500 characters"):
            case_file_upload(actor=w.coord1, case=w.case1, data=vf_csv("OD"), fundus_exception_reason="x" * 501)
        self.assertEqual(AuditEvent.objects.count(), before)


class InvitationTokenLogTests(SimpleTestCase):
    def test_invitation_tokens_are_redacted_from_request_and_server_logs(self):
        record = logging.LogRecord(
            "django.request",
            logging.WARNING,
            __file__,
            1,
            "%s: %s",
            ("Bad Request", "/accounts/invitations/abc123XYZ/"),
            None,
        )
        RedactInvitationTokens().filter(record)
        self.assertEqual(record.getMessage(), "Bad Request: /accounts/invitations/[redacted]/")
        record = logging.LogRecord(
            "django.server",
            logging.INFO,
            __file__,
            1,
            '"%s" %s %s',
            ("GET /accounts/invitations/tok/ HTTP/1.1", 200, 5),
            None,
        )
        RedactInvitationTokens().filter(record)
        self.assertIn("/accounts/invitations/[redacted]/", record.getMessage())
        self.assertNotIn("tok/", record.getMessage())


class SignAnswersFirstTests(TestCase):
    """A read that cannot be signed yet is refused before the password is checked or counted, and the reader is
    shown which confidence is missing, on its field."""

    def setUp(self):
        self.w = ReadingWorld()
        self.read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.read = services.read_draft_save(
            reader=self.w.reader, read=self.read, version=self.read.version, answers=GOOD, confidences={}
        )

    def test_the_service_refuses_missing_confidences_before_the_password(self):
        with self.assertRaisesMessage(ValidationError, "Give your confidence"):
            services.read_sign(
                read=self.read,
                signer=self.w.reader,
                password="wrong",
                meaning=services.MEANING_READ,
                version=self.read.version,
                username=self.w.reader.email,
            )
        self.w.reader.refresh_from_db()
        self.assertEqual(self.w.reader.failed_login_count, 0)  # the password was never checked

    def test_the_page_puts_the_error_on_the_confidence_field(self):
        self.client.force_login(self.w.reader)
        data = {
            "version": self.read.version,
            "icdr_grade": "0",
            "referable_dr": "no",
            "confidence": 80,
            "sign": "1",
            "username": self.w.reader.email,
            "password": PASSWORD,
            "meaning": services.MEANING_READ,
        }
        response = self.client.post(reverse("reading:read", args=[self.read.pk]), data)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response.context["form"].errors.get("c_icdr_grade"),
            ["Give your confidence (0-100) for 'ICDR diabetic retinopathy grade'."],
        )
        self.assertNotContains(response, "confidence:icdr_grade")


class AccountEventsInTheAuditTrailTests(TestCase):
    """Failed sign-ins and unlocks carry no hospital; the reviewers of the account's hospitals see them."""

    def test_a_manager_and_monitor_find_failed_sign_ins_and_an_unlock_of_their_people(self):
        from platform_core.accounts.services import person_unlock

        w = ReadingWorld(reading=False)
        with self.assertLogs("platform_core.accounts.services", "WARNING"):  # the address is blocked after five
            for _ in range(5):
                self.client.post(reverse("accounts:login"), {"username": w.reader3.email, "password": "wrong"})
        self.client.force_login(w.manager)
        page = self.client.get(f"/accounts/people/{w.reader3.pk}/")
        self.assertContains(page, "Sign-ins blocked from 1 address after failed attempts")
        person_unlock(actor=w.manager, user=w.reader3, reason="identity checked by phone")
        for reviewer in (w.manager, w.monitor):
            actions = set(
                audit_events_for(reviewer).filter(object_id=str(w.reader3.pk)).values_list("action", flat=True)
            )
            self.assertTrue({"login.failure", "user.unlock"} <= actions, (reviewer.email, actions))
        outsider_actions = audit_events_for(w.outsider).filter(object_id=str(w.reader3.pk))
        self.assertFalse(outsider_actions.exists())


class LabelsNotKeysTests(TestCase):
    def test_calibration_answers_groups_and_phases_read_as_labels(self):
        w = ReadingWorld()
        services.calibration_case_mark(
            actor=w.manager, case=w.case1, known_answers={"icdr_grade": "0", "referable_dr": "no"}
        )
        self.client.force_login(w.manager)
        page = self.client.get(reverse("reading:calibration", args=[w.trial.slug])).content.decode()
        self.assertIn("ICDR diabetic retinopathy grade: 0 No apparent retinopathy", page)
        self.assertNotIn("icdr_grade:", page)
        manage = self.client.get(reverse("reading:manage", args=[w.trial.slug])).content.decode()
        self.assertIn("<td>Resident</td>", manage)
        self.assertIn("<td>Unaided</td>", manage)
        self.assertNotIn("<td>resident</td>", manage)
