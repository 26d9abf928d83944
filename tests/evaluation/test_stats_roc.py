"""AUC, DeLong variance and the paired DeLong test against pROC (aSAH) and scikit-learn."""

from __future__ import annotations

import csv

import numpy as np
from django.test import SimpleTestCase
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from evaluation.stats.roc import auc_delong, delong_covariance, delong_paired_test, placements, roc_curve
from tests.support.evaluation import DATA, assert_printed


def load_asah() -> dict[str, np.ndarray]:
    with open(DATA / "asah_delong.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {column: np.array([float(row[column]) for row in rows]) for column in rows[0]}


def brute_force_delong(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """DeLong et al. 1988 written out over all diseased x non-diseased pairs (O(mn)), as an independent check."""
    x, y = scores[truth == 1], scores[truth == 0]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), float(v10.var(ddof=1) / x.size + v01.var(ddof=1) / y.size)


class PairedDelongAsahTests(SimpleTestCase):
    """pROC's tests/testthat/test-roc.test.R: roc.test(method = "delong", paired = TRUE), two-sided."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = load_asah()
        cls.truth = cls.data["outcome_poor"].astype(int)

    def check(self, a: str, b: str, z: str, p: str, ci: tuple[str, str]) -> None:
        result = delong_paired_test(self.truth, self.data[a], self.data[b])
        assert_printed(self, result.z, z, f"{a} vs {b} z")
        assert_printed(self, result.p_value, p, f"{a} vs {b} p")
        assert_printed(self, result.ci[0], ci[0], f"{a} vs {b} CI lower")
        assert_printed(self, result.ci[1], ci[1], f"{a} vs {b} CI upper")

    def test_wfns_vs_s100b(self):
        self.check(
            "wfns", "s100b", "2.20898359144091", "0.0271757822291882", ("0.0104061769564846", "0.174214419249478")
        )

    def test_wfns_vs_ndka(self):
        self.check(
            "wfns", "ndka", "2.79777591868904", "0.00514557970691098", ("0.0634011709339876", "0.3600405634833566")
        )

    def test_ndka_vs_s100b(self):
        self.check(
            "ndka", "s100b", "-1.39077002573558", "0.164295175223054", ("-0.2876917446341914", "0.0488706064228094")
        )

    def test_identical_scores_are_refused(self):
        with self.assertRaisesMessage(ValueError, "rank the cases identically"):
            delong_paired_test(self.truth, self.data["wfns"], self.data["wfns"])


class AucTests(SimpleTestCase):
    def setUp(self):
        rng = np.random.default_rng(12)
        self.truth = rng.integers(0, 2, 2000)
        # Rounded scores: many ties, which the midrank/grouping must count as 1/2.
        self.scores = np.round(rng.normal(size=2000) + 0.8 * self.truth, 1)

    def test_auc_equals_scikit_learn_with_ties(self):
        self.assertAlmostEqual(
            auc_delong(self.truth, self.scores).auc, roc_auc_score(self.truth, self.scores), delta=1e-12
        )

    def test_auc_and_variance_equal_the_pairwise_definition(self):
        auc, variance = brute_force_delong(self.truth, self.scores)
        result = auc_delong(self.truth, self.scores)
        self.assertAlmostEqual(result.auc, auc, delta=1e-12)
        self.assertAlmostEqual(result.variance, variance, delta=1e-15)
        self.assertAlmostEqual(result.se**2, variance, delta=1e-15)

    def test_placements_agree_with_the_grouped_fast_path(self):
        found = placements(self.truth, self.scores)
        result = auc_delong(self.truth, self.scores)
        self.assertAlmostEqual(found.auc, result.auc, delta=1e-12)
        aucs, covariance = delong_covariance(self.truth, [self.scores])
        self.assertAlmostEqual(covariance[0, 0], result.variance, delta=1e-15)

    def test_interval_is_the_wald_interval_clipped_to_one(self):
        result = auc_delong([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
        self.assertEqual(result.auc, 1.0)
        self.assertEqual(result.ci[1], 1.0)

    def test_single_aucs_of_asah_match_proc(self):
        # pROC: auc(aSAH$outcome, aSAH$s100b) = 0.7314, ci.auc (DeLong) 0.6301-0.8326.
        data = load_asah()
        result = auc_delong(data["outcome_poor"].astype(int), data["s100b"])
        assert_printed(self, result.auc, "0.7314")
        assert_printed(self, result.ci[0], "0.6301")
        assert_printed(self, result.ci[1], "0.8326")

    def test_one_class_is_refused(self):
        with self.assertRaisesMessage(ValueError, "both diseased and non-diseased"):
            auc_delong([1, 1, 1], [0.1, 0.2, 0.3])

    def test_non_finite_scores_are_refused(self):
        with self.assertRaisesMessage(ValueError, "finite"):
            auc_delong([0, 1], [0.1, float("nan")])


class RocCurveTests(SimpleTestCase):
    def test_points_equal_scikit_learn_without_dropping(self):
        rng = np.random.default_rng(3)
        truth = rng.integers(0, 2, 500)
        scores = np.round(rng.normal(size=500) + truth, 1)
        curve = roc_curve(truth, scores)
        fpr, tpr, thresholds = sklearn_roc_curve(truth, scores, drop_intermediate=False)
        np.testing.assert_allclose(curve.fpr, fpr, atol=1e-15)
        np.testing.assert_allclose(curve.tpr, tpr, atol=1e-15)
        np.testing.assert_array_equal(curve.thresholds[1:], thresholds[1:])
        self.assertAlmostEqual(float(np.trapezoid(curve.tpr, curve.fpr)), roc_auc_score(truth, scores), delta=1e-12)
