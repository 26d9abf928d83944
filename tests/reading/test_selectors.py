"""Reading selectors: analyses leave calibration cases out, calibration agreement per reader, stale readers."""

from __future__ import annotations

from datetime import timedelta

from django.test import TestCase
from django.utils import timezone

from reading import selectors, services
from reading.models import ReaderAssignment
from tests.support.reading import ReadingWorld


class CalibrationTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        services.calibration_case_mark(actor=self.w.manager, case=self.w.case1, known_answers={"icdr_grade": "0"})
        for _ in self.w.cases:
            self.w.signed_read(self.w.reader)
            self.w.signed_read(self.w.reader2, answers={"icdr_grade": "1", "referable_dr": "no", "confidence": 50})

    def test_analyses_leave_calibration_cases_out(self):
        case_ids = set(selectors.analysable_reads(self.w.trial).values_list("case_id", flat=True))
        self.assertEqual(case_ids, {self.w.case2.pk})

    def test_agreement_with_the_known_answer_per_reader(self):
        rows = {row["reader"]: row for row in selectors.calibration_agreement(self.w.trial)}
        self.assertEqual((rows[str(self.w.reader)]["reads"], rows[str(self.w.reader)]["agree"]), (1, 1))
        self.assertEqual((rows[str(self.w.reader2)]["reads"], rows[str(self.w.reader2)]["agree"]), (1, 0))


class ProgressTableTests(TestCase):
    def test_a_reader_who_has_not_read_for_n_days_is_flagged(self):
        w = ReadingWorld()
        w.signed_read(w.reader)
        w.signed_read(w.reader2)
        ReaderAssignment.objects.filter(reader=w.reader2).update(
            last_read_at=timezone.now() - timedelta(days=8)  # the default: 7 days
        )
        rows = {row["reader"]: row for row in selectors.progress_table(w.trial)}
        self.assertFalse(rows[w.reader.full_name]["stale"])
        self.assertTrue(rows[w.reader2.full_name]["stale"])
        self.assertTrue(rows[w.reader3.full_name]["stale"])  # never read
        self.assertEqual(rows[w.reader.full_name]["signed"], 1)
