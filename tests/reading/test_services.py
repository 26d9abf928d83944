"""Reading services: design, assignments, case order, drafts, marks, signing, amendment, reset,
adjudication and the reference-standard lock."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.test import TestCase
from django.utils import timezone

from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from reading import queue, services
from reading.models import Adjudication, LesionMark, Phase, Read
from tests.support.reading import GOOD, GOOD_CONF, PASSWORD, ReadingWorld
from trials.models import ReferenceStandard
from trials.services import case_set_status, subject_withdraw, trial_transition


class ReadingSetupTests(TestCase):
    def test_manager_sets_the_design_and_it_is_audited(self):
        w = ReadingWorld(aided=True)
        self.assertEqual(w.setup.phases, ["unaided", "aided"])
        self.assertEqual(w.setup.washout_days, 28)
        event = AuditEvent.objects.filter(action="reading.setup_set").get()
        self.assertEqual(event.changes["crossing"], [None, "fully_crossed"])

    def test_a_reader_cannot_set_the_design(self):
        w = ReadingWorld()
        with self.assertRaises(ApplicationError):
            services.reading_setup_set(actor=w.reader, trial=w.trial, crossing="k_per_case")

    def test_an_aided_phase_needs_a_washout(self):
        w = ReadingWorld()
        with self.assertRaises(ValidationError):
            services.reading_setup_set(actor=w.manager, trial=w.trial, aided_phase=True, washout_days=0)

    def test_the_design_is_fixed_once_reads_exist(self):
        w = ReadingWorld()
        services.read_next(reader=w.reader, trial=w.trial, phase=Phase.UNAIDED)
        with self.assertRaises(ValidationError):
            services.reading_setup_set(actor=w.manager, trial=w.trial, crossing="k_per_case")

    def test_assigning_someone_without_a_reader_role_is_refused(self):
        w = ReadingWorld()
        with self.assertRaises(ValidationError):
            services.reader_assign(actor=w.manager, trial=w.trial, reader=w.coord1, phase="unaided", group="resident")

    def test_an_unknown_group_is_refused_and_the_trials_own_group_accepted(self):
        w = ReadingWorld()
        with self.assertRaises(ValidationError):
            services.reader_assign(actor=w.manager, trial=w.trial, reader=w.reader, phase="unaided", group="wizard")
        services.reading_setup_set(actor=w.manager, trial=w.trial, extra_groups=["glaucoma fellow"])
        a = services.reader_assign(
            actor=w.manager, trial=w.trial, reader=w.reader, phase="unaided", group="glaucoma fellow"
        )
        self.assertEqual(a.group, "glaucoma fellow")

    def test_unassigning_needs_a_reason(self):
        w = ReadingWorld()
        a = w.assignments[(w.reader.pk, "unaided")]
        with self.assertRaises(ValidationError):
            services.reader_unassign(actor=w.manager, assignment=a, reason=" ")
        services.reader_unassign(actor=w.manager, assignment=a, reason="left the study")
        with self.assertRaises(ApplicationError):
            services.read_next(reader=w.reader, trial=w.trial, phase="unaided")


class CaseOrderTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld(reading=False)
        self.w.add_cases(12)
        self.w.start_reading()

    def order_of(self, reader):
        a = self.w.assignments[(reader.pk, "unaided")]
        return list(services.servable_cases(assignment=a, setup=self.w.setup).values_list("pk", flat=True))

    def test_order_is_stable_and_differs_between_readers(self):
        self.assertEqual(self.order_of(self.w.reader), self.order_of(self.w.reader))
        self.assertNotEqual(self.order_of(self.w.reader), self.order_of(self.w.reader2))
        self.assertEqual(set(self.order_of(self.w.reader)), set(self.order_of(self.w.reader2)))

    def test_the_order_is_the_case_ids_hash_keyed_with_the_readers_seed(self):
        # PostgreSQL's seeded uuid hash (stable across versions: hash partitioning relies on it), not MD5 of text.
        from django.db import connection

        self.assertEqual(connection.vendor, "postgresql")
        a = self.w.assignments[(self.w.reader.pk, "unaided")]
        ids = self.order_of(self.w.reader)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM trials_case WHERE id = ANY(%s) ORDER BY uuid_hash_extended(id, %s)", [ids, a.seed]
            )
            self.assertEqual([row[0] for row in cursor.fetchall()], ids)

    def test_next_case_follows_the_order_and_resumes_where_the_reader_stopped(self):
        expected = self.order_of(self.w.reader)
        first = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.assertEqual(first.case_id, expected[0])
        self.assertEqual(first.number, 1)
        again = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.assertEqual(again.pk, first.pk)  # a second tab or a double click: the same draft
        services.read_draft_save(reader=self.w.reader, read=first, version=1, answers=GOOD, confidences=GOOD_CONF)
        services.read_sign(
            read=first, signer=self.w.reader, password=PASSWORD, meaning=services.MEANING_READ, version=2
        )
        second = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.assertEqual((second.case_id, second.number), (expected[1], 2))

    def test_cases_not_complete_excluded_or_withdrawn_are_not_served(self):
        open_case = self.w.cases[2]
        case_set_status(actor=self.w.coord1, case=open_case, status="open", reason="more images")
        case_set_status(actor=self.w.coord1, case=self.w.cases[3], status="excluded", reason="ungradable")
        subject_withdraw(actor=self.w.coord2, subject=self.w.subject2, reason="consent withdrawn")
        served = set(self.order_of(self.w.reader))
        self.assertNotIn(open_case.pk, served)
        self.assertNotIn(self.w.cases[3].pk, served)
        self.assertNotIn(self.w.case2.pk, served)
        self.assertIn(self.w.case1.pk, served)

    def test_a_closed_trial_accepts_no_reads(self):
        trial_transition(actor=self.w.manager, trial=self.w.trial, status="closed", reason="done")
        self.w.trial.refresh_from_db()
        with self.assertRaisesMessage(ApplicationError, "closed"):
            services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")

    def test_nothing_left_gives_none(self):
        for _ in range(len(self.w.cases)):
            self.w.signed_read(self.w.reader)
        self.assertIsNone(services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided"))


class KReadersPerCaseTests(TestCase):
    def test_a_case_opened_by_k_readers_is_not_served_to_another(self):
        w = ReadingWorld(crossing="k_per_case", k=1)
        first = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        second = services.read_next(reader=w.reader2, trial=w.trial, phase="unaided")
        self.assertNotEqual(first.case_id, second.case_id)
        self.assertIsNone(services.read_next(reader=w.reader3, trial=w.trial, phase="unaided"))


class WashoutTests(TestCase):
    def test_aided_read_waits_for_the_washout_after_the_signed_unaided_read(self):
        w = ReadingWorld(aided=True)
        unaided = w.signed_read(w.reader)
        self.assertIsNone(services.read_next(reader=w.reader, trial=w.trial, phase="aided"))
        Read.objects.filter(pk=unaided.pk).update(signed_at=timezone.now() - timedelta(days=28, minutes=1))
        aided = services.read_next(reader=w.reader, trial=w.trial, phase="aided")
        self.assertEqual(aided.case_id, unaided.case_id)
        self.assertEqual(aided.unaided_read_id, unaided.pk)
        self.assertIsNone(services.read_next(reader=w.reader2, trial=w.trial, phase="aided"))

    def test_the_aided_phase_names_its_next_opening_past_a_washed_out_case_that_cannot_be_served(self):
        from reading.selectors import aided_phase_opens
        from trials.services import case_set_status

        w = ReadingWorld(aided=True, reading=False)
        w.add_cases(1)
        w.start_reading()
        first = w.signed_read(w.reader)
        second = w.signed_read(w.reader)
        now = timezone.now()
        Read.objects.filter(pk=first.pk).update(signed_at=now - timedelta(days=30))  # washed out...
        case = first.case
        coordinator = w.coord1 if case.subject.site.hospital == w.h1 else w.coord2
        case_set_status(actor=coordinator, case=case, status="excluded", reason="ungradable")  # ...but not servable
        Read.objects.filter(pk=second.pk).update(signed_at=now - timedelta(days=10))
        self.assertIsNone(services.read_next(reader=w.reader, trial=w.trial, phase="aided"))
        opens = aided_phase_opens(w.reader, w.trial)
        self.assertIsNotNone(opens)
        self.assertAlmostEqual((opens - now).total_seconds(), timedelta(days=18).total_seconds(), delta=60)

    def test_a_held_back_case_that_will_not_be_servable_names_no_opening(self):
        from reading.selectors import aided_phase_opens
        from trials.services import case_set_status

        w = ReadingWorld(aided=True)
        held = w.signed_read(w.reader)  # in its washout
        self.assertIsNotNone(aided_phase_opens(w.reader, w.trial))
        case = held.case
        coordinator = w.coord1 if case.subject.site.hospital == w.h1 else w.coord2
        case_set_status(actor=coordinator, case=case, status="excluded", reason="ungradable")
        self.assertIsNone(aided_phase_opens(w.reader, w.trial))  # nothing will open: 204, not a date

    def test_a_held_back_case_already_read_aided_by_k_readers_names_no_opening(self):
        from reading.selectors import aided_phase_opens

        w = ReadingWorld(aided=True, crossing="k_per_case", k=1)
        held = w.signed_read(w.reader)
        self.assertIsNotNone(aided_phase_opens(w.reader, w.trial))
        other = w.signed_read(w.reader2)
        Read.objects.filter(pk=other.pk).update(case=held.case)  # reader2's unaided read of the same case
        Read.objects.filter(pk=other.pk).update(signed_at=timezone.now() - timedelta(days=30))
        queue.queue_unaided_signed(Read.objects.get(pk=other.pk))  # as its signing would have queued it
        aided = services.read_next(reader=w.reader2, trial=w.trial, phase="aided")  # the k-th (1st) aided reader
        self.assertEqual(aided.case_id, held.case_id)
        self.assertIsNone(aided_phase_opens(w.reader, w.trial))


class DraftTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        self.read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")

    def test_draft_saves_answers_confidences_and_time(self):
        read = services.read_draft_save(
            reader=self.w.reader,
            read=self.read,
            version=1,
            answers={"icdr_grade": "2"},
            confidences={"icdr_grade": 70},
            seconds=12,
        )
        read.refresh_from_db()
        self.assertEqual(
            (read.answers, read.confidences, read.seconds_on_case, read.version),
            ({"icdr_grade": "2"}, {"icdr_grade": 70}, 12, 2),
        )
        self.assertTrue(AuditEvent.objects.filter(action="read.draft_save", object_id=str(read.pk)).exists())

    def test_a_stale_form_is_refused_and_changes_nothing(self):
        services.read_draft_save(
            reader=self.w.reader, read=self.read, version=1, answers={"icdr_grade": "2"}, confidences={}
        )
        with self.assertRaisesMessage(ApplicationError, "another tab"):
            services.read_draft_save(
                reader=self.w.reader, read=self.read, version=1, answers={"icdr_grade": "4"}, confidences={}
            )
        self.read.refresh_from_db()
        self.assertEqual(self.read.answers, {"icdr_grade": "2"})

    def test_bad_answers_are_refused_with_the_question_named(self):
        for answers, confidences, key in (
            ({"icdr_grade": "7"}, {}, "icdr_grade"),
            ({"glaucoma": "yes"}, {}, "glaucoma"),
            ({}, {"icdr_grade": 101}, "confidence:icdr_grade"),
            ({}, {"confidence": 50}, "confidence:confidence"),
        ):
            with self.assertRaises(ValidationError) as ctx:
                services.read_draft_save(
                    reader=self.w.reader, read=self.read, version=1, answers=answers, confidences=confidences
                )
            self.assertIn(key, ctx.exception.message_dict)
        self.read.refresh_from_db()
        self.assertEqual((self.read.answers, self.read.version), ({}, 1))

    def test_another_reader_cannot_save_my_draft(self):
        with self.assertRaises(ApplicationError):
            services.read_draft_save(reader=self.w.reader2, read=self.read, version=1, answers={}, confidences={})


class SignTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.read = services.read_draft_save(
            reader=self.w.reader, read=read, version=1, answers=GOOD, confidences=GOOD_CONF
        )

    def sign(self, password=PASSWORD, version=None):
        return services.read_sign(
            read=self.read,
            signer=self.w.reader,
            password=password,
            meaning=services.MEANING_READ,
            version=version or self.read.version,
        )

    def test_signing_stores_name_time_meaning_and_locks(self):
        read = self.sign()
        read.refresh_from_db()
        self.assertEqual(read.status, "signed")
        self.assertEqual(read.signature_name, self.w.reader.full_name)
        self.assertEqual(read.signature_meaning, "I confirm this read")
        self.assertIsNotNone(read.signed_at)
        with self.assertRaisesMessage(ApplicationError, "signed and locked"):
            services.read_draft_save(
                reader=self.w.reader, read=read, version=read.version, answers=GOOD, confidences=GOOD_CONF
            )

    def test_a_second_submit_of_the_same_form_is_refused(self):
        version = self.read.version
        self.sign(version=version)
        with self.assertRaises(ApplicationError):
            self.sign(version=version)
        self.assertEqual(Read.objects.filter(reader=self.w.reader).count(), 1)
        self.assertEqual(AuditEvent.objects.filter(action="read.sign").count(), 1)

    def test_wrong_password_signs_nothing_and_counts_towards_lock_out(self):
        with self.assertRaises(ValidationError):
            self.sign(password="wrong-password")
        self.read.refresh_from_db()
        self.w.reader.refresh_from_db()
        self.assertEqual(self.read.status, "draft")
        self.assertEqual(self.w.reader.failed_login_count, 1)
        for _ in range(4):
            with self.assertRaises(ValidationError):
                self.sign(password="wrong-password")
        with self.assertRaisesMessage(ApplicationError, "locked"):
            self.sign()

    def test_no_audit_event_holds_the_password(self):
        with self.assertRaises(ValidationError):
            self.sign(password="Sekrit-Guess-42")
        self.sign()
        for event in AuditEvent.objects.all():
            text = f"{event.changes} {event.reason} {event.object_repr}"
            self.assertNotIn(PASSWORD, text)
            self.assertNotIn("Sekrit-Guess-42", text)

    def test_an_incomplete_read_cannot_be_signed(self):
        read = services.read_draft_save(
            reader=self.w.reader, read=self.read, version=self.read.version, answers=GOOD, confidences={}
        )
        with self.assertRaises(ValidationError) as ctx:
            services.read_sign(
                read=read, signer=self.w.reader, password=PASSWORD, meaning=services.MEANING_READ, version=read.version
            )
        self.assertIn("confidence:icdr_grade", ctx.exception.message_dict)

    def test_a_meaning_is_required(self):
        with self.assertRaises(ValidationError):
            services.read_sign(
                read=self.read, signer=self.w.reader, password=PASSWORD, meaning="ok", version=self.read.version
            )


class AmendTests(TestCase):
    def test_amending_needs_a_reason_keeps_old_values_in_the_audit_trail_and_signs_again(self):
        w = ReadingWorld()
        read = w.signed_read(w.reader)
        new = {**GOOD, "icdr_grade": "1"}
        with self.assertRaises(ValidationError):
            services.read_amend(
                read=read,
                signer=w.reader,
                password=PASSWORD,
                meaning=services.MEANING_AMEND,
                reason="",
                version=read.version,
                answers=new,
                confidences=GOOD_CONF,
            )
        amended = services.read_amend(
            read=read,
            signer=w.reader,
            password=PASSWORD,
            meaning=services.MEANING_AMEND,
            reason="missed microaneurysms",
            version=read.version,
            answers=new,
            confidences=GOOD_CONF,
        )
        self.assertEqual(amended.answers["icdr_grade"], "1")
        self.assertEqual(amended.signature_meaning, services.MEANING_AMEND)
        event = AuditEvent.objects.get(action="read.amend")
        self.assertEqual(event.changes["answers"][0]["icdr_grade"], "0")
        self.assertEqual(event.reason, "missed microaneurysms")


class MarkTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld(images=True)
        self.read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.file = self.w.files[self.read.case_id]

    def tearDown(self):
        self.w.delete_files()

    def test_marks_are_added_changed_and_deleted_until_signed(self):
        mark = services.mark_add(
            reader=self.w.reader,
            read=self.read,
            case_file=self.file,
            kind="haemorrhage",
            shape="box",
            x=10,
            y=20,
            width=30,
            height=40,
        )
        services.mark_change(reader=self.w.reader, mark=mark, kind="hard_exudate")
        self.assertEqual(LesionMark.objects.get(pk=mark.pk).kind, "hard_exudate")
        services.mark_delete(reader=self.w.reader, mark=mark)
        self.assertFalse(LesionMark.objects.exists())
        actions = list(AuditEvent.objects.filter(action__startswith="read.mark").values_list("action", flat=True))
        self.assertEqual(actions, ["read.mark_add", "read.mark_change", "read.mark_delete"])
        mark = services.mark_add(
            reader=self.w.reader, read=self.read, case_file=self.file, kind="microaneurysm", shape="point", x=5, y=5
        )
        read = services.read_draft_save(
            reader=self.w.reader, read=self.read, version=1, answers=GOOD, confidences=GOOD_CONF
        )
        services.read_sign(
            read=read, signer=self.w.reader, password=PASSWORD, meaning=services.MEANING_READ, version=read.version
        )
        with self.assertRaises(ApplicationError):
            services.mark_change(reader=self.w.reader, mark=mark, x=6)

    def test_a_mark_outside_the_image_or_a_box_without_size_is_refused(self):
        with self.assertRaisesMessage(ValidationError, "outside the image"):
            services.mark_add(
                reader=self.w.reader, read=self.read, case_file=self.file, kind="haemorrhage", shape="point", x=500, y=5
            )
        with self.assertRaisesMessage(ValidationError, "width and a height"):
            services.mark_add(
                reader=self.w.reader, read=self.read, case_file=self.file, kind="haemorrhage", shape="box", x=5, y=5
            )
        self.assertFalse(LesionMark.objects.exists())


class ResetTests(TestCase):
    def test_manager_resets_unsigned_work_with_a_reason_and_the_case_is_served_again(self):
        w = ReadingWorld()
        read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        read = services.read_draft_save(reader=w.reader, read=read, version=1, answers=GOOD, confidences={})
        with self.assertRaises(ValidationError):
            services.read_reset(actor=w.manager, read=read, reason="")
        with self.assertRaises(ApplicationError):
            services.read_reset(actor=w.reader, read=read, reason="mine")
        services.read_reset(actor=w.manager, read=read, reason="reader asked to start over")
        event = AuditEvent.objects.get(action="read.reset")
        self.assertEqual(event.changes["answers"], [GOOD, None])
        again = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        self.assertEqual(again.case_id, read.case_id)

    def test_a_signed_read_is_never_reset(self):
        w = ReadingWorld()
        read = w.signed_read(w.reader)
        with self.assertRaises(ApplicationError):
            services.read_reset(actor=w.manager, read=read, reason="x")


class AdjudicationTests(TestCase):
    def discordant_world(self):
        w = ReadingWorld()
        for _ in w.cases:
            w.signed_read(w.reader, answers={"icdr_grade": "0", "referable_dr": "no", "confidence": 90})
            w.signed_read(w.reader2, answers={"icdr_grade": "3", "referable_dr": "yes", "confidence": 90})
        return w, w.case1

    def test_discordant_reads_open_an_adjudication(self):
        w, case = self.discordant_world()
        adjudication = Adjudication.objects.get(case=case)
        self.assertIn("referable discordance", adjudication.discordance)
        self.assertIn("grades 0 and 3 are 3 apart", adjudication.discordance)
        self.assertEqual(Adjudication.objects.count(), 2)

    def test_concordant_reads_open_no_adjudication(self):
        w = ReadingWorld()
        for _ in w.cases:
            w.signed_read(w.reader)
            w.signed_read(w.reader2, answers={"icdr_grade": "1", "referable_dr": "no", "confidence": 60})
        self.assertFalse(Adjudication.objects.exists())

    def test_panel_member_signs_the_reference_standard_recorded_as_unblinded(self):
        w, case = self.discordant_world()
        adjudication = Adjudication.objects.get(case=case)
        with self.assertRaises(ApplicationError):
            services.adjudication_sign(
                adjudication=adjudication,
                signer=w.reader,
                password=PASSWORD,
                meaning=services.MEANING_ADJUDICATE,
                answers={"icdr_grade": "2"},
                version=1,
            )
        services.adjudication_sign(
            adjudication=adjudication,
            signer=w.adjudicator,
            password=PASSWORD,
            meaning=services.MEANING_ADJUDICATE,
            answers={"icdr_grade": "2"},
            version=1,
        )
        reference = ReferenceStandard.objects.get(case=case)
        self.assertEqual((reference.icdr_grade, reference.source), (2, "adjudication"))
        event = AuditEvent.objects.get(action="adjudication.sign")
        self.assertEqual(event.changes["unblinded_by_design"], [None, True])
        self.assertEqual(event.actor, w.adjudicator)

    def test_after_the_lock_a_change_needs_a_reason_and_the_lock_is_signed(self):
        w, case = self.discordant_world()
        adjudication = Adjudication.objects.get(case=case)
        with self.assertRaises(ValidationError):
            services.reference_lock(actor=w.manager, trial=w.trial, password="nope", meaning=services.MEANING_LOCK)
        services.reference_lock(actor=w.manager, trial=w.trial, password=PASSWORD, meaning=services.MEANING_LOCK)
        self.assertEqual(
            AuditEvent.objects.get(action="reference.lock").changes["signature_meaning"][1], services.MEANING_LOCK
        )
        with self.assertRaises(ValidationError) as ctx:
            services.adjudication_sign(
                adjudication=adjudication,
                signer=w.adjudicator,
                password=PASSWORD,
                meaning=services.MEANING_ADJUDICATE,
                answers={"icdr_grade": "2"},
                version=1,
            )
        self.assertIn("reason", ctx.exception.message_dict)
        services.adjudication_sign(
            adjudication=adjudication,
            signer=w.adjudicator,
            password=PASSWORD,
            meaning=services.MEANING_ADJUDICATE,
            answers={"icdr_grade": "2"},
            version=1,
            reason="late adjudication agreed by the steering committee",
        )
        self.assertEqual(ReferenceStandard.objects.get(case=case).icdr_grade, 2)


class CalibrationTests(TestCase):
    def test_manager_marks_a_calibration_case_with_a_known_answer(self):
        w = ReadingWorld()
        services.calibration_case_mark(actor=w.manager, case=w.case1, known_answers={"icdr_grade": "2"})
        with self.assertRaises(ValidationError):
            services.calibration_case_mark(actor=w.manager, case=w.case2, known_answers={"icdr_grade": "9"})
        with self.assertRaises(ApplicationError):
            services.calibration_case_mark(actor=w.reader, case=w.case2, known_answers={"icdr_grade": "1"})
        self.assertTrue(AuditEvent.objects.filter(action="reading.calibration_mark").exists())
