"""Trial analyses from the trial's own data (issue 12, item 3): every figure checked against evaluation.stats on
the same numbers built by hand, calibration cases left out, the reference lock stated, the design's limits
stated, and the figures moving as reads are signed."""

from __future__ import annotations

import numpy as np
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from evaluation.analysis import trial_analysis
from evaluation.stats.mrmc import or_mrmc
from evaluation.stats.roc import auc_delong, delong_paired_test
from reading.models import Read
from tests.support.dashboard import GRADES, MODEL_1, MODEL_2, DashboardStudy, sign

TRUTH = np.array(GRADES) >= 2


def rating(answer: str, confidence: int) -> float:
    return 50 + confidence / 2 if answer == "yes" else 50 - confidence / 2


def question(report: dict, key: str) -> dict:
    return next(q for q in report["questions"] if q["key"] == key)


class TrialAnalysisTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.study = DashboardStudy()
        cls.w = cls.study.w

    def setUp(self):
        self.report = trial_analysis(self.w.trial)
        self.q = question(self.report, "referable_dr")

    def ratings(self, aided: bool) -> np.ndarray:
        return np.array(
            [[rating(*self.study.answer(c, r, aided)) for c in range(10)] for r in range(3)],
        )

    def test_calibration_cases_are_left_out(self):
        self.assertEqual(self.report["cases"], 10)
        self.assertEqual(Read.objects.filter(case__subject__trial=self.w.trial, status="signed").count(), 66)
        self.assertEqual(self.report["signed_reads"], 60)
        self.assertEqual(self.q["cases_with_reference"], 10)
        self.assertEqual((self.q["diseased"], self.q["non_diseased"]), (int(TRUTH.sum()), int((~TRUTH).sum())))

    def test_each_reader_per_phase_matches_the_statistics_core(self):
        for aided, phase in ((False, "unaided"), (True, "aided")):
            ratings = self.ratings(aided)
            for r, label in enumerate(("R01", "R02", "R03")):
                row = next(x for x in self.q["readers"] if x["reader"] == label and x["phase"] == phase)
                self.assertAlmostEqual(row["auc"]["auc"], auc_delong(TRUTH, ratings[r]).auc, places=12)
                calls = ratings[r] > 50
                self.assertEqual(row["sensitivity"]["successes"], int((calls & TRUTH).sum()))
                self.assertEqual(row["specificity"]["successes"], int((~calls & ~TRUTH).sum()))
                self.assertEqual(row["sensitivity"]["total"], int(TRUTH.sum()))
        groups = {(g["group"], g["phase"]): g for g in self.q["groups"]}
        self.assertEqual(
            set(groups),
            {(g, p) for g in ("all readers", "resident", "attending", "specialist") for p in ("unaided", "aided")},
        )
        pooled = self.ratings(False) > 50
        self.assertEqual(groups[("all readers", "unaided")]["sensitivity"]["successes"], int((pooled & TRUTH).sum()))
        self.assertEqual(groups[("all readers", "unaided")]["sensitivity"]["total"], 3 * int(TRUTH.sum()))

    def test_each_model_version_auc_operating_points_and_calibration(self):
        models = {m["model"]: m for m in self.q["models"]}
        self.assertEqual(list(models), ["dr-dash 1", "dr-dash 2"])
        for label, scores in (("dr-dash 1", MODEL_1), ("dr-dash 2", MODEL_2)):
            probability = np.array([p for p, _ in scores])
            found = models[label]
            expected = auc_delong(TRUTH, probability)
            self.assertAlmostEqual(found["auc"]["auc"], expected.auc, places=12)
            self.assertAlmostEqual(found["auc"]["ci95"][0], expected.ci[0], places=12)
            self.assertAlmostEqual(found["calibration"]["brier"], float(np.mean((probability - TRUTH) ** 2)), places=12)
            self.assertEqual(sum(found["calibration"]["cases"]), 10)
            high = found["high_sensitivity"]
            self.assertGreaterEqual(high["sensitivity"]["estimate"], 0.95)
            calls = probability >= high["threshold"]
            self.assertEqual(high["specificity"]["successes"], int((~calls & ~TRUTH).sum()))
            self.assertGreaterEqual(found["high_specificity"]["specificity"]["estimate"], 0.95)

    def test_paired_delong_between_model_versions(self):
        (pair,) = self.q["paired_models"]
        expected = delong_paired_test(TRUTH, [p for p, _ in MODEL_1], [p for p, _ in MODEL_2])
        self.assertAlmostEqual(pair["difference"], expected.difference, places=12)
        self.assertAlmostEqual(pair["p_value"], expected.p_value, places=12)

    def test_mrmc_unaided_vs_aided_and_readers_vs_each_model(self):
        mrmc = self.q["mrmc"]["unaided_vs_aided"]
        self.assertTrue(mrmc["supported"])
        expected = or_mrmc(np.stack([self.ratings(True), self.ratings(False)]), TRUTH)
        self.assertAlmostEqual(mrmc["difference"], expected.rrrc.differences[0].estimate, places=12)
        self.assertAlmostEqual(mrmc["ddf"], expected.rrrc.ddf, places=9)
        self.assertAlmostEqual(mrmc["p_value"], expected.rrrc.p_value, places=12)
        self.assertEqual((mrmc["readers"], mrmc["cases"]), (3, 10))
        self.assertIn("power", mrmc["power"]["sentence"].lower())
        versus = {row["model"]: row for row in self.q["mrmc"]["readers_vs_models"]}
        probability = np.array([p for p, _ in MODEL_1])
        expected = or_mrmc(np.stack([self.ratings(False), np.broadcast_to(probability, (3, 10))]), TRUTH)
        self.assertAlmostEqual(versus["dr-dash 1"]["difference"], expected.rrrc.differences[0].estimate, places=12)

    def test_grade_confusion_matrices_and_kappa(self):
        confusion = {c["source"]: c for c in self.report["confusion"]}
        model = np.array(confusion["dr-dash 1"]["table"])
        self.assertEqual(model.shape, (5, 5))
        self.assertEqual(int(np.trace(model)), sum(g == p for g, (_, p) in zip(GRADES, MODEL_1, strict=True)))
        readers = np.array(confusion["readers unaided"]["table"])
        self.assertEqual(int(readers.sum()), 30)
        self.assertEqual(readers.sum(axis=1).tolist(), [3 * GRADES.count(g) for g in range(5)])
        agreement = question(self.report, "referable_dr")["agreement"]
        self.assertEqual(agreement["readers"], ["R01", "R02", "R03"])
        self.assertEqual(agreement["kappa"][0][0], 1.0)
        self.assertEqual(agreement["kappa"][0][1], agreement["kappa"][1][0])

    def test_breakdowns_by_site_and_subgroup(self):
        rows = {(b["by"], b["value"]): b for b in self.q["breakdowns"]}
        self.assertEqual(rows[("Site", "H02")]["cases"], 1)
        self.assertEqual(rows[("Site", "H01")]["cases"], 9)
        self.assertEqual(rows[("Sex", "female")]["cases"], 10)
        self.assertEqual(rows[("Age band", "60-74")]["cases"], 10)
        h01 = rows[("Site", "H01")]["models"][0]["auc"]["auc"]
        keep = np.arange(10) != 1  # case 2 is the H02 subject's
        self.assertAlmostEqual(h01, auc_delong(TRUTH[keep], np.array([p for p, _ in MODEL_1])[keep]).auc, places=12)

    def test_reader_drift_on_calibration_cases(self):
        drift = {d["reader"]: d for d in self.report["drift"]}
        self.assertEqual((drift["R01"]["reads"], drift["R01"]["agree"]), (2, 2))
        self.assertEqual((drift["R02"]["reads"], drift["R02"]["agree"]), (2, 0))
        self.assertEqual(drift["R01"]["cumulative"], [1.0, 1.0])

    def test_progress_and_accrual(self):
        progress = self.report["progress"]
        signed = {(r["reader"], r["phase"]): r["signed"] for r in progress["readers"]}
        self.assertEqual(signed[("R01", "unaided")], 11)  # the calibration case is read too
        self.assertEqual(progress["readable_cases"], 11)
        self.assertEqual({s["site"]: s["enrolled"] for s in progress["sites"]}, {"H01": 3, "H02": 1})

    def test_the_design_and_the_lock_are_stated(self):
        design = {d["figure"]: d for d in self.report["design"]}
        self.assertTrue(self.report["reference_locked"])
        self.assertTrue(design["OR-MRMC (random readers and cases)"]["supported"])
        self.assertFalse(design["Breakdown by camera"]["supported"])

    def test_the_queries_do_not_grow_with_the_reads(self):
        with CaptureQueriesContext(connection) as before:
            trial_analysis(self.w.trial)
        Read.objects.filter(case__subject__trial=self.w.trial, phase="aided").update(status="draft")
        with CaptureQueriesContext(connection) as after:
            trial_analysis(self.w.trial)
        self.assertEqual(len(before), len(after))
        self.assertLess(len(before), 15)


class TrialAnalysisStateTests(TestCase):
    def test_results_update_as_reads_are_signed(self):
        study = DashboardStudy(sign_aided=False, lock=False)
        q = question(trial_analysis(study.w.trial), "referable_dr")
        self.assertFalse(q["mrmc"]["unaided_vs_aided"]["supported"])
        self.assertEqual({r["phase"] for r in q["readers"]}, {"unaided"})
        sign(study.w, study.readers[0], "aided", lambda case: study.answers(case, 0, aided=True))
        sign(study.w, study.readers[1], "aided", lambda case: study.answers(case, 1, aided=True))
        q = question(trial_analysis(study.w.trial), "referable_dr")
        self.assertTrue(q["mrmc"]["unaided_vs_aided"]["supported"])
        self.assertEqual(q["mrmc"]["unaided_vs_aided"]["readers"], 2)
        self.assertEqual({r["reader"] for r in q["readers"] if r["phase"] == "aided"}, {"R01", "R02"})

    def test_an_unlocked_or_absent_reference_is_stated(self):
        study = DashboardStudy(sign_aided=False, lock=False)
        report = trial_analysis(study.w.trial)
        self.assertFalse(report["reference_locked"])
        lock = next(d for d in report["design"] if d["figure"] == "Reference standard")
        self.assertIn("NOT locked", lock["note"])
        from trials.models import ReferenceStandard

        ReferenceStandard.objects.filter(case__subject__trial=study.w.trial).delete()
        q = question(trial_analysis(study.w.trial), "referable_dr")
        self.assertEqual(q["reason"], "no reference standard for this question yet")
        self.assertNotIn("models", q)

    def test_k_readers_per_case_does_not_support_mrmc(self):
        from reading.models import ReadingSetup
        from tests.support.reading import ReadingWorld

        w = ReadingWorld(crossing="k_per_case", k=2)
        setup = ReadingSetup.objects.get(trial=w.trial)
        self.assertEqual(setup.crossing, "k_per_case")
        report = trial_analysis(w.trial)
        design = next(d for d in report["design"] if d["figure"] == "OR-MRMC (random readers and cases)")
        self.assertFalse(design["supported"])
        self.assertIn("fully crossed", design["note"])
        self.assertEqual(question(report, "referable_dr")["reason"], "no reference standard for this question yet")


class GlaucomaAndEmptyTrialTests(TestCase):
    def test_glaucoma_answers_and_references(self):
        """Glaucoma: yes/no references only (suspect left out), a suspect answer is not positive and rates 50."""
        from reading.models import Read
        from trials.models import ReferenceStandard

        study = DashboardStudy(sign_aided=False, lock=False)
        trial = study.w.trial
        trial.reading_form = [*trial.reading_form, "glaucoma"]
        trial.save(update_fields=["reading_form"])
        references = ["yes", "no", "suspect", "yes", "no", "no", "yes", "no", "suspect", "yes"]
        for case, value in zip(study.cases, references, strict=True):
            ReferenceStandard.objects.filter(case=case).update(glaucoma=value)
        answers = {case.pk: ("yes", "no", "suspect")[i % 3] for i, case in enumerate(study.cases)}
        reader = study.readers[0]
        for read in Read.objects.filter(reader=reader, case__in=study.cases):
            read.answers = {**read.answers, "glaucoma": answers[read.case_id]}
            read.confidences = {**read.confidences, "glaucoma": 60}
            read.save(update_fields=["answers", "confidences"])
        q = question(trial_analysis(trial), "glaucoma")
        self.assertEqual((q["cases_with_reference"], q["diseased"], q["non_diseased"]), (8, 4, 4))
        (row,) = [r for r in q["readers"] if r["reader"] == "R01"]
        truth, ratings, calls = [], [], []
        for case, value in zip(study.cases, references, strict=True):
            if value == "suspect":
                continue
            answer = answers[case.pk]
            truth.append(value == "yes")
            ratings.append({"yes": 80.0, "no": 20.0, "suspect": 50.0}[answer])
            calls.append(answer == "yes")
        truth_a, calls_a = np.array(truth), np.array(calls)
        self.assertAlmostEqual(row["auc"]["auc"], auc_delong(truth_a, ratings).auc, places=12)
        self.assertEqual(row["sensitivity"]["successes"], int((truth_a & calls_a).sum()))
        self.assertEqual(row["specificity"]["successes"], int((~truth_a & ~calls_a).sum()))
        self.assertEqual(row["reads"], 10)  # R01 read every case; the suspect references only leave the figures

    def test_a_trial_with_references_and_predictions_but_no_readers(self):
        from tests.support.dashboard import model_version, predict
        from tests.support.factories import TrialWorld
        from trials.services import reference_standard_record

        w = TrialWorld()
        model = model_version("dr-alone", "1")
        for case, grade, probability in ((w.case1, 0, 0.2), (w.case2, 3, 0.9)):
            reference_standard_record(actor=w.manager, case=case, source="imported", icdr_grade=grade)
            predict(model, case, probability, grade)
        report = trial_analysis(w.trial)
        q = question(report, "referable_dr")
        self.assertEqual(q["models"][0]["auc"]["auc"], 1.0)
        self.assertEqual(q["readers"], [])
        self.assertFalse(q["mrmc"]["unaided_vs_aided"]["supported"])
        self.assertEqual(report["drift"], [])
        self.client.force_login(w.statistician)
        response = self.client.get(f"/evaluation/trials/{w.trial.slug}/dashboard/")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "no AI-aided phase")
