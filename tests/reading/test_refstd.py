"""Reference standard and reading oversight (issue 11, items 2, 6, 8, 9, 10): the majority-of-readers rule, the
reference lock (imports refused after it), full credentials at a session's first signature, the manager's
reset, calibration (reader drift) and lock pages, the reader's amend page, and the stale-reader flag."""

from __future__ import annotations

import io
import tempfile
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.utils import timezone
from rest_framework.test import APIClient

from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from reading import selectors, services
from reading.models import Adjudication, CalibrationCase, Read, ReaderAssignment, ReadingSetup
from tests.support.reading import GOOD_CONF, MODERATE, NO_DR, PASSWORD, ReadingWorld, majority_world, sign_every_case
from trials.models import ReferenceStandard
from trials.services import reference_standard_record

SEVERE = {"icdr_grade": "3", "referable_dr": "yes", "confidence": 80}


def amend(reader, case, answers, reason):
    read = Read.objects.get(reader=reader, case=case)
    return services.read_amend(
        read=read,
        signer=reader,
        password=PASSWORD,
        meaning=services.MEANING_AMEND,
        reason=reason,
        version=read.version,
        answers=answers,
        confidences=GOOD_CONF,
    )


class MajorityRuleTests(TestCase):
    def test_the_reference_is_the_majority_once_all_readers_signed(self):
        w = majority_world()
        sign_every_case(w, w.reader, {w.case1.pk: MODERATE, w.case2.pk: NO_DR})
        sign_every_case(w, w.reader2, {w.case1.pk: NO_DR, w.case2.pk: NO_DR})
        # Two of three readers: discordant, but the majority rule waits for every reader (no adjudication).
        self.assertFalse(ReferenceStandard.objects.exists())
        self.assertFalse(Adjudication.objects.exists())
        sign_every_case(w, w.reader3, {w.case1.pk: MODERATE, w.case2.pk: NO_DR})
        references = {r.case_id: r for r in ReferenceStandard.objects.all()}
        self.assertEqual((references[w.case1.pk].icdr_grade, references[w.case1.pk].source), (2, "majority"))
        self.assertEqual((references[w.case2.pk].icdr_grade, references[w.case2.pk].source), (0, "majority"))
        self.assertFalse(Adjudication.objects.exists())
        self.assertEqual(AuditEvent.objects.filter(action="reference.record").count(), 2)

    def test_a_tie_goes_to_adjudication_and_sets_no_reference(self):
        w = majority_world()
        sign_every_case(w, w.reader, {w.case1.pk: NO_DR, w.case2.pk: NO_DR})
        sign_every_case(w, w.reader2, {w.case1.pk: MODERATE, w.case2.pk: NO_DR})
        sign_every_case(w, w.reader3, {w.case1.pk: SEVERE, w.case2.pk: NO_DR})
        adjudication = Adjudication.objects.get()
        self.assertEqual(adjudication.case_id, w.case1.pk)
        self.assertEqual(adjudication.discordance, ["no majority for the ICDR diabetic retinopathy grade"])
        self.assertFalse(ReferenceStandard.objects.filter(case=w.case1).exists())
        self.assertTrue(ReferenceStandard.objects.filter(case=w.case2, source="majority").exists())

    def test_an_amended_read_changes_the_majority_until_the_lock(self):
        w = majority_world()
        sign_every_case(w, w.reader, {w.case1.pk: MODERATE, w.case2.pk: NO_DR})
        sign_every_case(w, w.reader2, {w.case1.pk: NO_DR, w.case2.pk: NO_DR})
        sign_every_case(w, w.reader3, {w.case1.pk: MODERATE, w.case2.pk: NO_DR})
        amend(w.reader, w.case1, NO_DR, "misread the haemorrhages")
        self.assertEqual(ReferenceStandard.objects.get(case=w.case1).icdr_grade, 0)
        self.assertEqual(AuditEvent.objects.filter(action="reference.amend").count(), 1)
        services.reference_lock(actor=w.manager, trial=w.trial, password=PASSWORD, meaning=services.MEANING_LOCK)
        amend(w.reader2, w.case1, SEVERE, "second look")
        amend(w.reader3, w.case1, SEVERE, "second look")
        # Locked: the majority is now grade 3, but the locked reference does not move.
        self.assertEqual(ReferenceStandard.objects.get(case=w.case1).icdr_grade, 0)

    def test_the_adjudication_rule_is_unchanged(self):
        w = ReadingWorld()
        sign_every_case(w, w.reader, {w.case1.pk: NO_DR, w.case2.pk: NO_DR})
        sign_every_case(w, w.reader2, {w.case1.pk: SEVERE, w.case2.pk: NO_DR})
        self.assertEqual(Adjudication.objects.get().case_id, w.case1.pk)
        sign_every_case(w, w.reader3, {w.case1.pk: SEVERE, w.case2.pk: NO_DR})
        self.assertFalse(ReferenceStandard.objects.exists())


class ImportAfterLockTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        self.csv = Path(tempfile.mkdtemp()) / "reference.csv"
        s = self.w.subject1
        self.csv.write_text(f"subject,eye,visit_day,icdr_grade,glaucoma\n{s.pseudonym},OD,0,2,\n")

    def test_the_csv_import_works_before_the_lock_and_is_refused_after_it(self):
        call_command("import_reference", str(self.csv), trial=self.w.trial.slug, stdout=io.StringIO())
        self.assertEqual(ReferenceStandard.objects.get(case=self.w.case1).icdr_grade, 2)
        services.reference_lock(
            actor=self.w.manager, trial=self.w.trial, password=PASSWORD, meaning=services.MEANING_LOCK
        )
        self.csv.write_text(f"subject,eye,visit_day,icdr_grade,glaucoma\n{self.w.subject1.pseudonym},OD,0,4,\n")
        with self.assertRaisesMessage(CommandError, "Nothing imported: the reference standard of"):
            call_command("import_reference", str(self.csv), trial=self.w.trial.slug, reason="fix", stdout=io.StringIO())
        self.assertEqual(ReferenceStandard.objects.get(case=self.w.case1).icdr_grade, 2)

    def test_the_service_refuses_imported_labels_after_the_lock(self):
        services.reference_lock(
            actor=self.w.manager, trial=self.w.trial, password=PASSWORD, meaning=services.MEANING_LOCK
        )
        with self.assertRaises(ApplicationError) as ctx:
            reference_standard_record(actor=None, case=self.w.case2, source="imported", icdr_grade=1)
        self.assertEqual(ctx.exception.code, "reference_locked")
        self.assertFalse(ReferenceStandard.objects.exists())


class FirstSignatureOfASessionTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        self.client.force_login(self.w.reader)

    def post_sign(self, read, **signature):
        data = {
            "version": read.version,
            "seconds": 5,
            "q_icdr_grade": "0",
            "c_icdr_grade": "70",
            "q_referable_dr": "no",
            "c_referable_dr": "75",
            "q_confidence": "60",
            "sign": "1",
            "meaning": services.MEANING_READ,
            **signature,
        }
        return self.client.post(f"/reading/reads/{read.pk}/", data)

    def test_the_first_signing_asks_for_the_email_and_later_ones_the_password_only(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        page = self.client.get(f"/reading/reads/{read.pk}/")
        self.assertContains(page, "Your e-mail address (first signature of this session)")
        refused = self.post_sign(read, password=PASSWORD)
        self.assertEqual(refused.status_code, 200)
        self.assertContains(refused, "This field is required")
        read.refresh_from_db()
        self.assertFalse(read.is_signed)
        someone_else = self.post_sign(read, username=self.w.reader2.email, password=PASSWORD)
        self.assertContains(someone_else, "not the e-mail address of the signed-in account")
        read.refresh_from_db()
        self.assertFalse(read.is_signed)
        self.assertEqual(type(self.w.reader).objects.get(pk=self.w.reader.pk).failed_login_count, 1)
        self.post_sign(read, username=self.w.reader.email.upper(), password=PASSWORD)
        read.refresh_from_db()
        self.assertTrue(read.is_signed)
        second = Read.objects.get(reader=self.w.reader, number=2)
        page = self.client.get(f"/reading/reads/{second.pk}/")
        self.assertNotContains(page, "first signature of this session")
        self.post_sign(second, password=PASSWORD)
        second.refresh_from_db()
        self.assertTrue(second.is_signed)

    def test_a_new_session_asks_for_the_full_credentials_again(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.post_sign(read, username=self.w.reader.email, password=PASSWORD)
        self.client.logout()
        self.client.force_login(self.w.reader)
        second = Read.objects.get(reader=self.w.reader, number=2)
        self.assertContains(self.client.get(f"/reading/reads/{second.pk}/"), "first signature of this session")
        self.post_sign(second, password=PASSWORD)
        second.refresh_from_db()
        self.assertFalse(second.is_signed)

    def test_the_api_token_is_the_session_of_the_api(self):
        from platform_core.accounts.services import api_token_issue

        key = api_token_issue(user=self.w.reader)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        first = services.read_draft_save(
            reader=self.w.reader,
            read=services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided"),
            version=1,
            answers=NO_DR,
            confidences=GOOD_CONF,
        )
        body = {"version": 2, "password": PASSWORD, "meaning": services.MEANING_READ}
        refused = api.post(f"/api/v1/reading/reads/{first.pk}/sign/", body, format="json")
        self.assertEqual(refused.status_code, 400)
        self.assertIn("e-mail address", refused.content.decode())
        signed = api.post(
            f"/api/v1/reading/reads/{first.pk}/sign/", {**body, "username": self.w.reader.email}, format="json"
        )
        self.assertEqual(signed.status_code, 200, signed.content)
        second = services.read_draft_save(
            reader=self.w.reader,
            read=services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided"),
            version=1,
            answers=NO_DR,
            confidences=GOOD_CONF,
        )
        again = api.post(f"/api/v1/reading/reads/{second.pk}/sign/", body, format="json")
        self.assertEqual(again.status_code, 200, again.content)

    def test_a_wrong_username_counts_towards_lock_out_in_the_service(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        read = services.read_draft_save(
            reader=self.w.reader, read=read, version=1, answers=NO_DR, confidences=GOOD_CONF
        )
        with self.assertRaises(ValidationError) as ctx:
            services.read_sign(
                read=read,
                signer=self.w.reader,
                password=PASSWORD,
                meaning=services.MEANING_READ,
                version=read.version,
                username="someone@else.example",
            )
        self.assertIn("username", ctx.exception.message_dict)
        self.assertTrue(AuditEvent.objects.filter(action="login.failure", object_id=str(self.w.reader.pk)).exists())


class ResetPageTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        self.draft = services.read_draft_save(
            reader=self.w.reader,
            read=services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided"),
            version=1,
            answers={"icdr_grade": "3"},
            confidences={},
        )
        self.url = f"/reading/trials/{self.w.trial.slug}/reset/"

    def test_a_manager_resets_an_unsigned_read_with_a_reason(self):
        self.client.force_login(self.w.manager)
        page = self.client.get(self.url)
        self.assertContains(page, f"Reset case {self.draft.number} of {self.w.reader}")
        self.assertNotContains(page, "icdr_grade")  # no answers on the page
        refused = self.client.post(self.url, {"read": str(self.draft.pk), "reason": "  "})
        self.assertEqual(refused.status_code, 200)
        self.assertTrue(Read.objects.filter(pk=self.draft.pk).exists())
        response = self.client.post(self.url, {"read": str(self.draft.pk), "reason": "reader opened the wrong eye"})
        self.assertRedirects(response, self.url)
        self.assertFalse(Read.objects.filter(pk=self.draft.pk).exists())
        event = AuditEvent.objects.get(action="read.reset")
        self.assertEqual(event.reason, "reader opened the wrong eye")
        self.assertEqual(event.changes["answers"], [{"icdr_grade": "3"}, None])

    def test_signed_reads_are_not_offered_and_others_are_refused(self):
        self.w.signed_read(self.w.reader2)
        signed = Read.objects.get(reader=self.w.reader2)
        self.client.force_login(self.w.manager)
        self.assertEqual(self.client.post(self.url, {"read": str(signed.pk), "reason": "x"}).status_code, 404)
        self.assertTrue(Read.objects.filter(pk=signed.pk).exists())
        for user in (self.w.reader, self.w.monitor, self.w.coord1):
            self.client.force_login(user)
            self.assertIn(self.client.get(self.url).status_code, (403, 404))
            self.client.post(self.url, {"read": str(self.draft.pk), "reason": "x"})
        self.assertTrue(Read.objects.filter(pk=self.draft.pk).exists())


class AmendPageTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        self.read = self.w.signed_read(self.w.reader)
        self.url = f"/reading/reads/{self.read.pk}/amend/"
        self.client.force_login(self.w.reader)

    def amend(self, **extra):
        data = {
            "version": self.read.version,
            "q_icdr_grade": "1",
            "c_icdr_grade": "65",
            "q_referable_dr": "no",
            "c_referable_dr": "70",
            "q_confidence": "55",
            "reason": "rechecked the photograph",
            "username": self.w.reader.email,
            "password": PASSWORD,
            "meaning": services.MEANING_AMEND,
        }
        data.update(extra)
        return self.client.post(self.url, data)

    def test_the_reader_finds_their_signed_read_and_amends_it_with_a_reason_and_a_signature(self):
        listing = self.client.get(f"/reading/trials/{self.w.trial.slug}/signed/")
        self.assertContains(listing, f"Amend case {self.read.number}")
        self.assertContains(self.client.get(self.url), "Amend case")
        no_reason = self.amend(reason="")
        self.assertEqual(no_reason.status_code, 200)
        wrong = self.amend(password="nope")
        self.assertContains(wrong, "The password is not correct")
        self.read.refresh_from_db()
        self.assertEqual(self.read.answers["icdr_grade"], "0")
        loaded_version = self.read.version
        response = self.amend()
        self.assertRedirects(response, f"/reading/trials/{self.w.trial.slug}/signed/")
        self.read.refresh_from_db()
        self.assertEqual((self.read.answers["icdr_grade"], self.read.signature_meaning), ("1", services.MEANING_AMEND))
        event = AuditEvent.objects.get(action="read.amend")
        self.assertEqual(event.reason, "rechecked the photograph")
        self.assertEqual(event.changes["answers"][0]["icdr_grade"], "0")  # the old values stay in the trail
        stale = self.amend(version=loaded_version, q_icdr_grade="2")  # a form loaded before the amendment
        self.assertContains(stale, "changed since you opened it")

    def test_nobody_else_amends_it_and_a_draft_has_no_amend_page(self):
        self.client.force_login(self.w.reader2)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertEqual(self.amend().status_code, 404)
        draft = services.read_next(reader=self.w.reader2, trial=self.w.trial, phase="unaided")
        self.assertRedirects(self.client.get(f"/reading/reads/{draft.pk}/amend/"), f"/reading/reads/{draft.pk}/")


class CalibrationPageTests(TestCase):
    def test_a_manager_marks_a_calibration_case_and_sees_reader_drift_by_week(self):
        w = ReadingWorld()
        url = f"/reading/trials/{w.trial.slug}/calibration/"
        self.client.force_login(w.manager)
        self.assertContains(self.client.get(url), "No calibration cases yet.")
        refused = self.client.post(url, {"case": str(w.case1.pk)})
        self.assertContains(refused, "Give the known answer")
        response = self.client.post(url, {"case": str(w.case1.pk), "q_icdr_grade": "0", "q_referable_dr": "no"})
        self.assertRedirects(response, url)
        self.assertEqual(CalibrationCase.objects.get().known_answers, {"icdr_grade": "0", "referable_dr": "no"})
        self.assertTrue(AuditEvent.objects.filter(action="reading.calibration_mark").exists())
        # reader agrees in an early week, then drifts; reader2 disagrees once.
        sign_every_case(w, w.reader, {w.case1.pk: NO_DR, w.case2.pk: NO_DR})
        sign_every_case(w, w.reader2, {w.case1.pk: MODERATE, w.case2.pk: NO_DR})
        Read.objects.filter(reader=w.reader, case=w.case1).update(signed_at=timezone.now() - timedelta(days=14))
        calibration2 = services.calibration_case_mark(actor=w.manager, case=w.case2, known_answers={"icdr_grade": "2"})
        self.assertEqual(calibration2.case_id, w.case2.pk)
        drift = selectors.calibration_drift(w.trial)
        self.assertEqual(len(drift["weeks"]), 2)
        rows = {row["reader"]: row for row in drift["rows"]}
        self.assertEqual(rows[w.reader.full_name]["change"], -100)  # 100% two weeks ago, 0% this week
        self.assertIsNone(rows[w.reader2.full_name]["change"])
        self.assertEqual((rows[w.reader2.full_name]["agree"], rows[w.reader2.full_name]["reads"]), (0, 2))
        page = self.client.get(url)
        self.assertContains(page, 'data-testid="reader-drift"')
        self.assertContains(page, "-100 points")
        self.assertContains(page, "100% (1/1)")

    def test_readers_and_monitors_cannot_open_it(self):
        w = ReadingWorld()
        for user in (w.reader, w.monitor, w.adjudicator):
            self.client.force_login(user)
            url = f"/reading/trials/{w.trial.slug}/calibration/"
            self.assertIn(self.client.get(url).status_code, (403, 404))
            self.client.post(url, {"case": str(w.case1.pk), "q_icdr_grade": "0"})
        self.assertFalse(CalibrationCase.objects.exists())


class ReferencePageTests(TestCase):
    def test_the_manager_locks_the_reference_standard_with_a_signature(self):
        w = majority_world()
        url = f"/reading/trials/{w.trial.slug}/reference/"
        self.client.force_login(w.manager)
        page = self.client.get(url)
        self.assertContains(page, "Majority of readers")
        self.assertContains(page, "ties go to the adjudication panel")
        wrong = self.client.post(
            url, {"username": w.manager.email, "password": "nope", "meaning": services.MEANING_LOCK}
        )
        self.assertContains(wrong, "The password is not correct")
        self.assertIsNone(ReadingSetup.objects.get(trial=w.trial).reference_locked_at)
        response = self.client.post(
            url, {"username": w.manager.email, "password": PASSWORD, "meaning": services.MEANING_LOCK}
        )
        self.assertRedirects(response, url)
        self.assertIsNotNone(ReadingSetup.objects.get(trial=w.trial).reference_locked_at)
        self.assertContains(self.client.get(url), 'data-testid="reference-locked"')
        self.assertEqual(AuditEvent.objects.get(action="reference.lock").actor, w.manager)

    def test_others_cannot_lock(self):
        w = ReadingWorld()
        for user in (w.reader, w.monitor, w.statistician, w.adjudicator):
            self.client.force_login(user)
            url = f"/reading/trials/{w.trial.slug}/reference/"
            self.assertIn(self.client.get(url).status_code, (403, 404))
            self.client.post(url, {"username": user.email, "password": PASSWORD, "meaning": services.MEANING_LOCK})
        self.assertIsNone(ReadingSetup.objects.get(trial=w.trial).reference_locked_at)


class StaleReaderTests(TestCase):
    def test_the_flag_follows_the_setting_on_the_reading_setup(self):
        w = ReadingWorld()
        w.signed_read(w.reader)
        ReaderAssignment.objects.filter(reader=w.reader).update(last_read_at=timezone.now() - timedelta(days=4))
        rows = {row["reader"]: row for row in selectors.progress_table(w.trial)}
        self.assertFalse(rows[w.reader.full_name]["stale"])  # default 7 days
        self.client.force_login(w.manager)
        response = self.client.post(
            f"/reading/trials/{w.trial.slug}/manage/",
            {
                "setup": "1",
                "crossing": "fully_crossed",
                "readers_per_case": 2,
                "washout_days": 28,
                "grade_gap": 2,
                "stale_after_days": 3,
            },
        )
        self.assertRedirects(response, f"/reading/trials/{w.trial.slug}/manage/")
        self.assertEqual(ReadingSetup.objects.get(trial=w.trial).stale_after_days, 3)
        changed = AuditEvent.objects.filter(action="reading.setup_set").order_by("-seq").first()
        self.assertEqual(changed.changes["stale_after_days"], [7, 3])
        page = self.client.get(f"/reading/trials/{w.trial.slug}/manage/")
        self.assertContains(page, "not read for 3 days")
        rows = {row["reader"]: row for row in selectors.progress_table(w.trial)}
        self.assertTrue(rows[w.reader.full_name]["stale"])
        self.assertEqual(rows[w.reader.full_name]["remaining"], 1)
        self.assertContains(page, 'data-testid="group-progress"')
        groups = {(g["group"], g["phase"]): g for g in selectors.progress_by_group(selectors.progress_table(w.trial))}
        self.assertEqual((groups[("resident", "unaided")]["signed"], groups[("resident", "unaided")]["stale"]), (1, 1))

    def test_a_reader_who_finished_is_not_flagged(self):
        w = ReadingWorld()
        sign_every_case(w, w.reader, {w.case1.pk: NO_DR, w.case2.pk: NO_DR})
        ReaderAssignment.objects.filter(reader=w.reader).update(last_read_at=timezone.now() - timedelta(days=30))
        rows = {row["reader"]: row for row in selectors.progress_table(w.trial)}
        self.assertEqual(rows[w.reader.full_name]["remaining"], 0)
        self.assertFalse(rows[w.reader.full_name]["stale"])
