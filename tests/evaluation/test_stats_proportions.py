"""Proportions against Newcombe (1998), Stat Med 17:857, Table I (methods 3 = Wilson score, 5 = Clopper-Pearson)."""

from __future__ import annotations

from django.test import SimpleTestCase
from scipy.stats import binomtest

from evaluation.stats.proportions import clopper_pearson_interval, diagnostic_metrics, proportion, wilson_interval
from tests.support.evaluation import assert_printed

# successes, total, Wilson (lower, upper), Clopper-Pearson (lower, upper): Newcombe 1998, Table I.
NEWCOMBE_1998 = [
    (81, 263, ("0.2553", "0.3662"), ("0.2527", "0.3676")),
    (15, 148, ("0.0624", "0.1605"), ("0.0578", "0.1617")),
    (0, 20, ("0.0000", "0.1611"), ("0.0000", "0.1684")),
    (1, 29, ("0.0061", "0.1718"), ("0.0009", "0.1776")),
]


class IntervalTests(SimpleTestCase):
    def test_wilson_matches_newcombe(self):
        for successes, total, wilson, _ in NEWCOMBE_1998:
            lower, upper = wilson_interval(successes, total)
            assert_printed(self, lower, wilson[0], f"Wilson lower {successes}/{total}")
            assert_printed(self, upper, wilson[1], f"Wilson upper {successes}/{total}")

    def test_clopper_pearson_matches_newcombe(self):
        for successes, total, _, exact in NEWCOMBE_1998:
            lower, upper = clopper_pearson_interval(successes, total)
            assert_printed(self, lower, exact[0], f"exact lower {successes}/{total}")
            assert_printed(self, upper, exact[1], f"exact upper {successes}/{total}")

    def test_both_intervals_equal_scipys_binomtest(self):
        for successes, total in ((0, 7), (3, 17), (50, 51), (400, 1000)):
            result = binomtest(successes, total)
            for ours, method in ((wilson_interval, "wilson"), (clopper_pearson_interval, "exact")):
                expected = result.proportion_ci(confidence_level=0.95, method=method)
                lower, upper = ours(successes, total)
                self.assertAlmostEqual(lower, expected.low, delta=1e-12, msg=f"{method} {successes}/{total}")
                self.assertAlmostEqual(upper, expected.high, delta=1e-12, msg=f"{method} {successes}/{total}")

    def test_all_successes_close_the_exact_interval_at_one(self):
        self.assertEqual(clopper_pearson_interval(20, 20)[1], 1.0)

    def test_impossible_counts_are_refused(self):
        with self.assertRaisesMessage(ValueError, "0 <= successes <= total"):
            wilson_interval(5, 4)

    def test_an_empty_proportion_has_no_estimate(self):
        empty = proportion(0, 0)
        self.assertNotEqual(empty.estimate, empty.estimate)  # nan


class DiagnosticMetricsTests(SimpleTestCase):
    def test_counts_and_each_metric(self):
        truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
        called = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
        metrics = diagnostic_metrics(truth, called)
        self.assertEqual(
            (metrics.true_positives, metrics.false_negatives, metrics.false_positives, metrics.true_negatives),
            (3, 1, 1, 5),
        )
        self.assertEqual(metrics.sensitivity.estimate, 3 / 4)
        self.assertEqual(metrics.specificity.estimate, 5 / 6)
        self.assertEqual(metrics.ppv.estimate, 3 / 4)
        self.assertEqual(metrics.npv.estimate, 5 / 6)
        self.assertEqual(metrics.accuracy.estimate, 8 / 10)
        self.assertEqual(metrics.sensitivity.wilson, wilson_interval(3, 4))
        self.assertEqual(metrics.specificity.clopper_pearson, clopper_pearson_interval(5, 6))

    def test_truth_other_than_zero_or_one_is_refused(self):
        with self.assertRaisesMessage(ValueError, "truth must be 0"):
            diagnostic_metrics([0, 2], [0, 1])

    def test_mismatched_lengths_are_refused(self):
        with self.assertRaisesMessage(ValueError, "truth has 2 cases but the calls have 3"):
            diagnostic_metrics([0, 1], [0, 1, 1])
