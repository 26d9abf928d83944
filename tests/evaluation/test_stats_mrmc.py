"""OR-MRMC against the published outputs of OR-DBM MRMC 2.51, MRMCaov and RJafroc (tests/evaluation/data)."""

from __future__ import annotations

import numpy as np
from django.test import SimpleTestCase

from evaluation.stats.mrmc import foms_and_jackknife, or_mrmc, or_mrmc_readers_vs_standalone
from tests.support.evaluation import assert_printed, load_reads


class VanDykeJackknifeTests(SimpleTestCase):
    """Van Dyke: trapezoidal AUC, jackknife covariances; the table of vandyke_mrmc.README.md."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.table = load_reads("vandyke_mrmc.csv")
        cls.result = or_mrmc(cls.table.ratings, cls.table.truth)

    def test_reader_aucs_match_the_published_ones(self):
        published = [
            ["0.91964573", "0.85877617", "0.90386473", "0.97310789", "0.82979066"],
            ["0.94782609", "0.90531401", "0.92173913", "0.99935588", "0.92995169"],
        ]
        for t in range(2):
            for r in range(5):
                assert_printed(self, self.result.foms[t, r], published[t][r], f"AUC modality {t + 1} reader {r + 1}")

    def test_reader_averaged_aucs_and_difference(self):
        assert_printed(self, self.result.modalities[0].estimate, "0.89703704")
        assert_printed(self, self.result.modalities[1].estimate, "0.94083736")
        assert_printed(self, self.result.rrrc.differences[0].estimate, "-0.04380032")

    def test_mean_squares_and_variance_components(self):
        c = self.result.components
        for actual, printed in (
            (c.ms_t, "0.004796171"),
            (c.ms_r, "0.00383620"),
            (c.ms_tr, "0.0005510306"),
            (c.var_r, "0.0015349993"),
            (c.var_tr, "0.0002004025"),
            (c.var, "0.0008022883"),
            (c.cov1, "0.0003466137"),
            (c.cov2, "0.0003440748"),
            (c.cov3, "0.0002390284"),
        ):
            assert_printed(self, actual, printed)

    def test_random_readers_random_cases(self):
        rrrc = self.result.rrrc
        assert_printed(self, rrrc.statistic, "4.456319", "F")
        self.assertEqual(rrrc.ndf, 1)
        assert_printed(self, rrrc.ddf, "15.25967", "ddf_H")
        assert_printed(self, rrrc.p_value, "0.05166569", "p")
        difference = rrrc.differences[0]
        assert_printed(self, difference.se, "0.02074862", "SE")
        assert_printed(self, difference.estimate / difference.se, "-2.110999", "t")
        assert_printed(self, difference.ci[0], "-0.0879595")
        assert_printed(self, difference.ci[1], "0.0003589")

    def test_single_modality_intervals(self):
        first, second = self.result.modalities
        assert_printed(self, first.ci[0], "0.8252236")
        assert_printed(self, first.ci[1], "0.9688505")
        assert_printed(self, first.df, "12.74")
        assert_printed(self, second.ci[0], "0.8941378")
        assert_printed(self, second.ci[1], "0.9875369")
        assert_printed(self, second.df, "12.71")

    def test_fixed_readers_random_cases(self):
        frrc = self.result.frrc
        assert_printed(self, frrc.statistic, "5.475953", "chi2")
        assert_printed(self, frrc.p_value, "0.01927984", "p")
        assert_printed(self, frrc.differences[0].ci[0], "-0.08048591")
        assert_printed(self, frrc.differences[0].ci[1], "-0.00711473")

    def test_random_readers_fixed_cases(self):
        rrfc = self.result.rrfc
        assert_printed(self, rrfc.statistic, "8.704", "F")
        self.assertEqual((rrfc.ndf, rrfc.ddf), (1, 4.0))
        assert_printed(self, rrfc.p_value, "0.04195875", "p")
        assert_printed(self, rrfc.differences[0].ci[0], "-0.08502")
        assert_printed(self, rrfc.differences[0].ci[1], "-0.00258")


class VanDykeOtherEstimatorsTests(SimpleTestCase):
    """Van Dyke with DeLong covariances, and sensitivity at rating >= 3 (MRMCaov manuscript)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.table = load_reads("vandyke_mrmc.csv")

    def test_delong_covariances(self):
        result = or_mrmc(self.table.ratings, self.table.truth, covariance="delong")
        c = result.components
        assert_printed(self, c.var, "0.0007921325")
        assert_printed(self, c.cov1, "0.0003420090")
        assert_printed(self, c.cov2, "0.0003395265")
        assert_printed(self, c.cov3, "0.0002358497")
        assert_printed(self, result.rrrc.statistic, "4.484854", "F")
        assert_printed(self, result.rrrc.ddf, "15.06611", "ddf")
        assert_printed(self, result.rrrc.p_value, "0.05123303", "p")
        assert_printed(self, result.rrrc.differences[0].ci[0], "-0.0878672")
        assert_printed(self, result.rrrc.differences[0].ci[1], "0.0002666")

    def test_sensitivity_at_rating_three(self):
        result = or_mrmc(self.table.ratings, self.table.truth, "sensitivity", threshold=3)
        assert_printed(self, result.modalities[0].estimate, "0.8222")
        assert_printed(self, result.modalities[1].estimate, "0.9200")
        assert_printed(self, result.rrrc.differences[0].estimate, "-0.09777778")
        assert_printed(self, result.rrrc.statistic, "6.689493", "F")
        assert_printed(self, result.rrrc.ddf, "15.71732", "ddf")
        assert_printed(self, result.rrrc.p_value, "0.02008822", "p")
        assert_printed(self, result.rrrc.differences[0].ci[0], "-0.1780371")
        assert_printed(self, result.rrrc.differences[0].ci[1], "-0.0175185")

    def test_sensitivity_jackknife_runs_over_diseased_cases_only(self):
        foms, jack = foms_and_jackknife(self.table.ratings, self.table.truth, "sensitivity", threshold=3)
        self.assertEqual(jack.shape[2], int(self.table.truth.sum()))
        # Non-diseased ratings play no part in sensitivity, so rewriting them changes nothing.
        changed = self.table.ratings.copy()
        changed[:, :, ~self.table.truth] = np.random.default_rng(1).integers(
            1, 6, changed[:, :, ~self.table.truth].shape
        )
        before = or_mrmc(self.table.ratings, self.table.truth, "sensitivity", threshold=3)
        after = or_mrmc(changed, self.table.truth, "sensitivity", threshold=3)
        self.assertEqual(before.rrrc.statistic, after.rrrc.statistic)
        self.assertEqual(before.components.var, after.components.var)

    def test_specificity_jackknife_runs_over_non_diseased_cases_only(self):
        foms, jack = foms_and_jackknife(self.table.ratings, self.table.truth, "specificity", threshold=3)
        self.assertEqual(jack.shape[2], int((~self.table.truth).sum()))
        expected = (self.table.ratings[:, :, ~self.table.truth] < 3).mean(axis=2)
        np.testing.assert_array_equal(foms, expected)

    def test_delong_covariances_are_refused_for_sensitivity(self):
        with self.assertRaisesMessage(ValueError, "AUC only"):
            or_mrmc(self.table.ratings, self.table.truth, "sensitivity", threshold=3, covariance="delong")

    def test_sensitivity_without_threshold_is_refused(self):
        with self.assertRaisesMessage(ValueError, "needs a threshold"):
            or_mrmc(self.table.ratings, self.table.truth, "sensitivity")


class FrankenTests(SimpleTestCase):
    """Franken: Cov2 < Cov3, so the Hillis ddf falls back to (T-1)(R-1) = 3 (OR-DBM MRMC 2.51 output)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        table = load_reads("franken_mrmc.csv")
        cls.result = or_mrmc(table.ratings, table.truth)

    def test_published_figures(self):
        r = self.result
        assert_printed(self, r.modalities[0].estimate, "0.84774989")
        assert_printed(self, r.modalities[1].estimate, "0.83689507")
        assert_printed(self, r.rrrc.differences[0].estimate, "0.01085482")
        c = r.components
        assert_printed(self, c.var_tr, "-0.00071276")
        assert_printed(self, c.var, "0.00152578")
        assert_printed(self, c.cov1, "0.00079168")
        assert_printed(self, c.cov2, "0.00048364")
        assert_printed(self, c.cov3, "0.00051251")
        assert_printed(self, r.rrrc.statistic, "4.69", "F")
        assert_printed(self, r.rrrc.ddf, "3.00", "ddf")
        assert_printed(self, r.rrrc.p_value, "0.1188", "p")
        assert_printed(self, r.rrrc.differences[0].se, "0.00501", "SE")
        assert_printed(self, r.rrrc.differences[0].ci[0], "-0.00509")
        assert_printed(self, r.rrrc.differences[0].ci[1], "0.02680")
        assert_printed(self, r.modalities[0].df, "70.12")
        assert_printed(self, r.modalities[1].df, "253.64")

    def test_the_fallback_is_noted(self):
        self.assertTrue(any("Cov2 < Cov3" in note for note in self.result.notes))


class ReadersVersusStandaloneTests(SimpleTestCase):
    """Nine radiologists against standalone CAD (RJafroc StCadVsRad, 1T-RRRC, Wilcoxon)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        table = load_reads("cad_vs_radiologists_roc.csv")
        ratings = table.ratings[0]
        cls.result = or_mrmc_readers_vs_standalone(ratings[1:], ratings[0], table.truth)

    def test_published_figures(self):
        r = self.result
        assert_printed(self, r.modalities[1].estimate, "0.81692708", "CAD AUC")
        assert_printed(self, r.modalities[0].estimate, "0.84866319", "mean radiologist AUC")
        difference = r.rrrc.differences[0]
        assert_printed(self, difference.estimate, "0.03173611")
        assert_printed(self, difference.ci[0], "-0.03099877")
        assert_printed(self, difference.ci[1], "0.09447099")
        assert_printed(self, np.sqrt(r.rrrc.statistic), "0.99286888", "t")
        assert_printed(self, r.rrrc.ddf, "877.886", "df")
        assert_printed(self, r.rrrc.p_value, "0.32104743", "p")

    def test_components_of_the_reader_minus_cad_differences(self):
        # With the algorithm as a modality, MS_R(D) = 2·MS(T×R), Var(D) = 2(Var − Cov1), Cov2(D) = 2(Cov2 − Cov3).
        c = self.result.components
        assert_printed(self, 2 * c.ms_tr, "0.00087779", "MS_R(D)")
        assert_printed(self, 2 * (c.var - c.cov1), "0.00139955", "Var(D)")
        assert_printed(self, 2 * (c.cov2 - c.cov3), "0.00092417", "Cov2(D)")


class UndefinedTestTests(SimpleTestCase):
    def test_no_difference_and_no_variance_gives_no_statistic_rather_than_significance(self):
        # Every reader calls every diseased case positive in both modalities: sensitivity 1 everywhere.
        truth = np.array([0, 0, 0, 1, 1, 1])
        ratings = np.array([[[1, 2, 1, 5, 5, 4], [2, 1, 1, 4, 5, 5]], [[1, 1, 3, 5, 4, 4], [1, 2, 1, 5, 5, 5]]])
        result = or_mrmc(ratings, truth, "sensitivity", threshold=3)
        self.assertTrue(np.isnan(result.rrrc.statistic))
        self.assertTrue(np.isnan(result.rrrc.p_value))
        self.assertTrue(np.isnan(result.frrc.p_value))


class DesignRefusalTests(SimpleTestCase):
    def test_one_modality_is_refused(self):
        with self.assertRaisesMessage(ValueError, "at least two modalities and two readers"):
            or_mrmc(np.zeros((1, 3, 4)), [0, 0, 1, 1])

    def test_missing_reads_are_refused(self):
        ratings = np.ones((2, 2, 4))
        ratings[0, 1, 2] = np.nan
        with self.assertRaisesMessage(ValueError, "fully crossed"):
            or_mrmc(ratings, [0, 0, 1, 1])

    def test_one_class_is_refused(self):
        with self.assertRaisesMessage(ValueError, "both diseased and non-diseased"):
            or_mrmc(np.ones((2, 2, 4)), [1, 1, 1, 1])
