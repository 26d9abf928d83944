"""The reference standard recorded while a reader signs (PostgreSQL, real threads): a trial manager importing a case's
reference standard, or a coordinator changing a case of the trial, while the last reader signs a case of a trial
whose reference standard is the readers' majority. Both finish, in either order, and the trail verifies.

The signing records the majority (``reference_standard_record``) after its first audit event, so it holds the audit
chain's lock when it locks the reference standard's row. The import locked that row first (and, through the model's
ordering, the case's, subject's and trial's rows with it), then waited for the chain's lock: a deadlock. So did any
change that holds the trial's row while it waits for the chain's lock (``case_set_status``), once the signing reached
the reference's lock, and the first reference of a case inserted by both (the import's row, not yet committed, holds
up the signing's insert). And an import checked the reference lock before it waited: a lock signed meanwhile
committed first, and the imported label after it."""

from __future__ import annotations

from django.test import TransactionTestCase

from platform_core.audit.models import AuditEvent
from platform_core.audit.services import audit_verify
from reading import services
from reading.models import Adjudication, Read
from tests.support import require_postgresql
from tests.support.races import paused_race
from tests.support.reading import GOOD_CONF, MODERATE, NO_DR, PASSWORD, ReadingWorld, majority_world, sign_every_case
from trials.models import Case, ReferenceStandard
from trials.services import case_set_status, reference_standard_record


class ReferenceWhileSigningRaceTests(TransactionTestCase):
    """A majority trial: readers 1 and 2 signed every case, reader 3 has case 1 left to sign (grade 2 by majority)."""

    def setUp(self):
        require_postgresql()
        w = self.w = majority_world()
        sign_every_case(w, w.reader, {w.case1.pk: MODERATE, w.case2.pk: NO_DR})
        sign_every_case(w, w.reader2, {w.case1.pk: MODERATE, w.case2.pk: NO_DR})
        read = services.read_next(reader=w.reader3, trial=w.trial, phase="unaided")
        while read.case_id != w.case1.pk:  # reader 3's own order: sign until case 1 comes up
            self.save_and_sign(read, NO_DR)
            read = services.read_next(reader=w.reader3, trial=w.trial, phase="unaided")
        self.read = services.read_draft_save(
            reader=w.reader3, read=read, version=read.version, answers=MODERATE, confidences=GOOD_CONF
        )

    def save_and_sign(self, read, answers) -> None:
        read = services.read_draft_save(
            reader=self.w.reader3, read=read, version=read.version, answers=answers, confidences=GOOD_CONF
        )
        services.read_sign(
            read=read, signer=self.w.reader3, password=PASSWORD, meaning=services.MEANING_READ, version=read.version
        )

    def sign(self) -> None:
        services.read_sign(
            read=self.read,
            signer=self.w.reader3,
            password=PASSWORD,
            meaning=services.MEANING_READ,
            version=self.read.version,
        )

    def import_reference(self, grade: int = 3) -> None:
        reference_standard_record(
            actor=self.w.manager,
            case=self.w.case1,
            source="imported",
            icdr_grade=grade,
            reason="graded again at the reading centre",
        )

    def exclude_case2(self) -> None:
        case_set_status(actor=self.w.coord2, case=self.w.case2, status="excluded", reason="the photograph is blurred")

    def check(self, *, grade: int, source: str, actions: list[str]) -> None:
        self.assertEqual(Read.objects.get(pk=self.read.pk).status, "signed")
        reference = ReferenceStandard.objects.get(case=self.w.case1)
        self.assertEqual((reference.icdr_grade, reference.source), (grade, source))
        events = AuditEvent.objects.filter(object_type="trials.referencestandard", object_id=str(reference.pk))
        self.assertEqual(list(events.order_by("seq").values_list("action", flat=True)), actions)
        report = audit_verify()
        self.assertTrue(report.ok, report.problem)

    def test_a_reference_imported_while_the_last_reader_signs_the_case(self):
        self.import_reference(grade=4)
        # The import holds the reference's row when the signing reaches it.
        self.assertEqual(paused_race("trials.services.audited_save", self.import_reference, self.sign), [])
        # The import committed first, then the signing's majority amended it.
        self.check(grade=2, source="majority", actions=["reference.record", "reference.amend", "reference.amend"])

    def test_the_last_reader_signing_while_a_reference_is_imported(self):
        self.import_reference(grade=4)
        # The signing holds the audit chain's lock when the import locks the reference's row.
        self.assertEqual(
            paused_race("reading.services.reference_standard_record", self.sign, self.import_reference), []
        )
        # The signing's majority amended the first import, then the import (with its reason) amended the majority.
        self.check(grade=3, source="imported", actions=["reference.record", "reference.amend", "reference.amend"])

    def test_the_first_reference_of_a_case_imported_while_its_last_reader_signs(self):
        # Neither finds a reference: both insert one, and the second insert waits for the first's transaction.
        self.assertEqual(
            paused_race("reading.services.reference_standard_record", self.sign, self.import_reference), []
        )
        # The signing recorded the majority, then the import amended it.
        self.check(grade=3, source="imported", actions=["reference.record", "reference.amend"])

    def test_a_case_of_the_trial_excluded_while_the_last_reader_signs(self):
        self.import_reference(grade=4)
        # The signing holds the audit chain's lock when the exclusion locks the case's trial (and waits for that lock).
        self.assertEqual(paused_race("reading.services.reference_standard_record", self.sign, self.exclude_case2), [])
        self.check(grade=2, source="majority", actions=["reference.record", "reference.amend"])
        self.assertEqual(Case.objects.get(pk=self.w.case2.pk).status, "excluded")

    def test_the_reference_locked_while_a_reference_is_imported(self):
        # The import's lock check and its label are one step: the lock, signed meanwhile, waits for the import's
        # commit. Checked before the chain's lock, the import found the reference unlocked, the lock committed,
        # and the imported label was recorded after it.
        def lock() -> None:
            services.reference_lock(
                actor=self.w.manager, trial=self.w.trial, password=PASSWORD, meaning=services.MEANING_LOCK
            )

        errors = paused_race("trials.services.audited_save", self.import_reference, lock)
        reference = ReferenceStandard.objects.get(case=self.w.case1)
        recorded = AuditEvent.objects.get(action="reference.record", object_id=str(reference.pk))
        locked = AuditEvent.objects.get(action="reference.lock")
        self.assertLess(recorded.seq, locked.seq, "the imported label was recorded after the lock")
        self.assertEqual(errors, [])


class AdjudicationWhileLockingRaceTests(TransactionTestCase):
    """A panel member signs an adjudication while the trial manager locks the reference standard (PostgreSQL, real
    threads): the adjudication comes first (no reason needed) or the lock does (then it needs a reason), never a
    change of a locked reference without a reason. The adjudication used to read the lock before it took the audit
    chain's lock, so a lock committed in between was missed."""

    def setUp(self):
        require_postgresql()
        w = self.w = ReadingWorld()
        for _ in w.cases:
            w.signed_read(w.reader, answers={"icdr_grade": "0", "referable_dr": "no", "confidence": 90})
            w.signed_read(w.reader2, answers={"icdr_grade": "3", "referable_dr": "yes", "confidence": 90})
        self.adjudication = Adjudication.objects.get(case=w.case1)

    def test_the_reference_locked_while_a_panel_member_signs(self):
        def adjudicate() -> None:
            services.adjudication_sign(
                adjudication=self.adjudication,
                signer=self.w.adjudicator,
                password=PASSWORD,
                meaning=services.MEANING_ADJUDICATE,
                answers={"icdr_grade": "2"},
                version=1,
            )

        def lock() -> None:
            services.reference_lock(
                actor=self.w.manager, trial=self.w.trial, password=PASSWORD, meaning=services.MEANING_LOCK
            )

        # Paused after the adjudication read the lock (its snapshot of the row comes next), the lock then commits.
        errors = paused_race("reading.services.snapshot", adjudicate, lock)
        self.assertEqual(errors, [])
        signed = AuditEvent.objects.get(action="adjudication.sign")
        locked = AuditEvent.objects.get(action="reference.lock")
        self.assertLess(signed.seq, locked.seq, "a locked reference was changed without a reason")
        self.assertEqual(ReferenceStandard.objects.get(case=self.w.case1).icdr_grade, 2)
        report = audit_verify()
        self.assertTrue(report.ok, report.problem)
