"""Kappa against published figures (vcd, irr / Fleiss 1971) and scikit-learn."""

from __future__ import annotations

import numpy as np
from django.test import SimpleTestCase
from sklearn.metrics import cohen_kappa_score

from evaluation.stats.kappa import cohen_kappa, cohen_kappa_table, cohen_kappas, fleiss_kappa, fleiss_kappa_counts
from tests.support.evaluation import assert_printed

# Agresti's SexualFun table (husband's rating x wife's), as shipped in R's vcd; vcd::Kappa(SexualFun) prints
# unweighted 0.1293 (ASE 0.06860, z 1.885, p 0.059387) and equal-spacing weighted 0.2374 (ASE 0.07832, z 3.031,
# p 0.002437).
SEXUAL_FUN = np.array([[7, 7, 2, 3], [2, 8, 3, 7], [1, 5, 4, 9], [2, 8, 9, 14]])

# Fleiss (1971), Table 1: 30 patients, 6 psychiatrists each, how many chose depression, personality disorder,
# schizophrenia, neurosis, other (R's irr::diagnoses). irr::kappam.fleiss prints kappa 0.430, z 17.652;
# DOMAIN.md gives 0.4302445.
FLEISS_1971 = np.array(
    [
        [0, 0, 0, 6, 0], [0, 3, 0, 0, 3], [0, 1, 4, 0, 1], [0, 0, 0, 0, 6], [0, 3, 0, 3, 0],
        [2, 0, 4, 0, 0], [0, 0, 4, 0, 2], [2, 0, 3, 1, 0], [2, 0, 0, 4, 0], [0, 0, 0, 0, 6],
        [1, 0, 0, 5, 0], [1, 1, 0, 4, 0], [0, 3, 3, 0, 0], [1, 0, 0, 5, 0], [0, 2, 0, 3, 1],
        [0, 0, 5, 0, 1], [3, 0, 0, 1, 2], [5, 1, 0, 0, 0], [0, 2, 0, 4, 0], [1, 0, 2, 0, 3],
        [0, 0, 0, 0, 6], [0, 1, 0, 5, 0], [0, 2, 0, 1, 3], [2, 0, 0, 4, 0], [1, 0, 0, 4, 1],
        [0, 5, 0, 1, 0], [4, 0, 0, 0, 2], [0, 2, 0, 4, 0], [1, 0, 5, 0, 0], [0, 0, 0, 0, 6],
    ]
)  # fmt: skip


class CohenKappaPublishedTests(SimpleTestCase):
    def test_unweighted_matches_vcd(self):
        result = cohen_kappa_table(SEXUAL_FUN)
        assert_printed(self, result.kappa, "0.1293")
        assert_printed(self, result.se, "0.06860", "ASE")
        assert_printed(self, result.z, "1.885", "z")
        assert_printed(self, result.p_value, "0.059387", "p")

    def test_linear_weighted_matches_vcd_equal_spacing(self):
        result = cohen_kappa_table(SEXUAL_FUN, "linear")
        assert_printed(self, result.kappa, "0.2374")
        assert_printed(self, result.se, "0.07832", "ASE")
        assert_printed(self, result.z, "3.031", "z")
        assert_printed(self, result.p_value, "0.002437", "p")


class CohenKappaAgainstScikitLearnTests(SimpleTestCase):
    def setUp(self):
        rng = np.random.default_rng(5)
        self.a = rng.integers(0, 5, 400)
        self.b = np.clip(self.a + rng.integers(-1, 2, 400), 0, 4)

    def test_each_weighting_equals_scikit_learn(self):
        for ours, theirs in (("unweighted", None), ("linear", "linear"), ("quadratic", "quadratic")):
            expected = cohen_kappa_score(self.a, self.b, weights=theirs)
            self.assertAlmostEqual(cohen_kappa(self.a, self.b, range(5), ours).kappa, expected, delta=1e-12)

    def test_an_unused_grade_keeps_its_place_in_the_weights(self):
        # Nobody graded 3 (of ICDR 0-4): with the full list the quadratic weights stay those of five grades.
        a = np.where(self.a == 3, 2, self.a)
        b = np.where(self.b == 3, 2, self.b)
        full = cohen_kappa(a, b, [0, 1, 2, 3, 4], "quadratic").kappa
        self.assertAlmostEqual(full, cohen_kappa_score(a, b, labels=[0, 1, 2, 3, 4], weights="quadratic"), delta=1e-12)
        observed_only = cohen_kappa(a, b, [0, 1, 2, 4], "quadratic").kappa
        self.assertNotAlmostEqual(full, observed_only, places=3)

    def test_a_grade_outside_the_list_is_refused(self):
        with self.assertRaisesMessage(ValueError, "rater B used categories not in the list"):
            cohen_kappa([0, 1], [0, 7], [0, 1, 2])

    def test_different_lengths_are_refused(self):
        with self.assertRaisesMessage(ValueError, "rater A rated 2 subjects but rater B 3"):
            cohen_kappa([0, 1], [0, 1, 1], [0, 1])


class FleissKappaTests(SimpleTestCase):
    def test_fleiss_1971_diagnoses(self):
        result = fleiss_kappa_counts(FLEISS_1971)
        assert_printed(self, result.kappa, "0.4302445")
        assert_printed(self, result.z, "17.652", "z")

    def test_ratings_per_subject_give_the_same_kappa_as_counts(self):
        ratings = [np.repeat(np.arange(5), row) for row in FLEISS_1971]
        self.assertAlmostEqual(fleiss_kappa(ratings, range(5)).kappa, fleiss_kappa_counts(FLEISS_1971).kappa, 15)

    def test_unequal_numbers_of_raters_are_refused(self):
        with self.assertRaisesMessage(ValueError, "same number of ratings"):
            fleiss_kappa_counts([[2, 1], [1, 1]])


class VectorisedKappaTests(SimpleTestCase):
    """``cohen_kappas`` (a stack of tables at once, for the dashboard's reader agreement matrix) gives the kappa of
    ``cohen_kappa_table`` for every table, and nan where kappa is undefined or the table empty."""

    def test_the_same_kappa_as_one_table_at_a_time(self):
        rng = np.random.default_rng(7)
        tables = rng.integers(0, 20, size=(4, 3, 5, 5))
        for weights in ("unweighted", "linear", "quadratic"):
            found = cohen_kappas(tables, weights)
            self.assertEqual(found.shape, (4, 3))
            for index in np.ndindex(4, 3):
                expected = cohen_kappa_table(tables[index], weights).kappa
                self.assertAlmostEqual(found[index], expected, places=12)

    def test_undefined_and_empty_tables_are_nan(self):
        found = cohen_kappas(np.array([[[5, 0], [0, 0]], [[0, 0], [0, 0]], [[3, 1], [1, 3]]]))
        self.assertTrue(np.isnan(found[0]) and np.isnan(found[1]))
        self.assertAlmostEqual(found[2], 0.5)
