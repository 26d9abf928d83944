"""OR-MRMC power and sample size: checked against a simulation of the OR model and for internal consistency."""

from __future__ import annotations

import numpy as np
from django.test import SimpleTestCase
from scipy import stats as sps

from evaluation.stats.mrmc import VarianceComponents, or_mrmc
from evaluation.stats.power import cases_for_power, or_power, readers_for_power, study_plan
from tests.support.evaluation import assert_printed, load_reads


def simulated_power(components: VarianceComponents, effect: float, readers: int, cases: int, runs: int, seed: int):
    """Share of simulated two-modality studies whose RRRC test rejects at 5%: figures of merit drawn from the OR
    model (reader x modality interaction σ²_TR, errors with the covariances Var, Cov1, Cov2, Cov3 scaled by
    N0/N), tested with the Hillis F on the simulated mean squares."""
    rng = np.random.default_rng(seed)
    scale = components.cases / cases
    size = 2 * readers
    t_index = np.repeat([0, 1], readers)
    r_index = np.tile(np.arange(readers), 2)
    same_t = t_index[:, None] == t_index[None, :]
    same_r = r_index[:, None] == r_index[None, :]
    sigma = np.where(
        same_t & same_r,
        components.var,
        np.where(same_r, components.cov1, np.where(same_t, components.cov2, components.cov3)),
    )
    errors = rng.multivariate_normal(np.zeros(size), sigma * scale, size=runs).reshape(runs, 2, readers)
    interaction = rng.normal(0, np.sqrt(max(components.var_tr, 0.0)), size=(runs, 2, readers))
    readers_effect = rng.normal(0, np.sqrt(max(components.var_r, 0.0)), size=(runs, 1, readers))
    foms = np.array([effect / 2, -effect / 2])[None, :, None] + readers_effect + interaction + errors
    d = foms[:, 0, :] - foms[:, 1, :]
    ms_t = readers * d.mean(axis=1) ** 2 / 2
    ms_tr = ((d - d.mean(axis=1, keepdims=True)) ** 2).sum(axis=1) / (2 * (readers - 1))
    denominator = ms_tr + readers * scale * max(components.cov2 - components.cov3, 0.0)
    ddf = denominator**2 / (ms_tr**2 / (readers - 1))
    return float(np.mean(sps.f.sf(ms_t / denominator, 1, ddf) < 0.05))


class PowerAgainstSimulationTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        table = load_reads("vandyke_mrmc.csv")
        cls.components = or_mrmc(table.ratings, table.truth).components

    def test_power_of_the_pilot_design_matches_simulation(self):
        formula = or_power(self.components, 0.05, readers=5, cases=114).power
        simulated = simulated_power(self.components, 0.05, 5, 114, runs=20_000, seed=1)
        self.assertAlmostEqual(formula, simulated, delta=0.02)

    def test_power_with_more_cases_and_readers_matches_simulation(self):
        # 3x the cases: the error covariances shrink by 114/342; a formula that ignored that would say about 0.75.
        formula = or_power(self.components, 0.05, readers=8, cases=342).power
        simulated = simulated_power(self.components, 0.05, 8, 342, runs=20_000, seed=2)
        self.assertAlmostEqual(formula, simulated, delta=0.02)
        self.assertGreater(formula, or_power(self.components, 0.05, readers=8, cases=114).power + 0.05)

    def test_no_difference_gives_the_test_size(self):
        self.assertAlmostEqual(or_power(self.components, 0.0, readers=5, cases=114).power, 0.05, delta=1e-9)
        self.assertAlmostEqual(simulated_power(self.components, 0.0, 5, 114, runs=20_000, seed=3), 0.05, delta=0.01)


class RJafrocPublishedPowerTests(SimpleTestCase):
    """RJafroc (Chakraborty) on Van Dyke (its dataset02), Wilcoxon AUC, OR method, RRRC, effect size = the observed
    difference −0.043800322: the regression values of tests/testthat (SsPowerGivenJK, SsSampleSizeKGivenJ, after
    "updating Ss routines from Hillis 2011 and 2018 papers") and the sample-size vignette's printout."""

    EFFECT = -0.043800322

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        table = load_reads("vandyke_mrmc.csv")
        cls.components = or_mrmc(table.ratings, table.truth).components

    def test_ten_readers_165_cases(self):
        assert_printed(self, or_power(self.components, self.EFFECT, readers=10, cases=165).power, "0.80541995")

    def test_six_readers_111_cases(self):
        assert_printed(self, or_power(self.components, self.EFFECT, readers=6, cases=111).power, "0.5526116")

    def test_six_readers_112_cases_as_the_vignette_prints(self):
        result = or_power(self.components, self.EFFECT, readers=6, cases=112)
        assert_printed(self, result.power, "0.5555789")
        assert_printed(self, result.noncentrality, "4.8", "ncp")
        assert_printed(self, result.ddf, "23.1", "ddf")

    def test_six_readers_need_251_cases_for_80_percent(self):
        self.assertEqual(cases_for_power(self.components, self.EFFECT, readers=6), 251)


class SampleSizeTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        table = load_reads("vandyke_mrmc.csv")
        cls.components = or_mrmc(table.ratings, table.truth).components

    def test_at_the_pilot_size_the_ddf_is_the_observed_hillis_ddf(self):
        assert_printed(self, or_power(self.components, 0.05, readers=5, cases=114).ddf, "15.25967")

    def test_cases_for_power_is_the_smallest_number_that_reaches_it(self):
        cases = cases_for_power(self.components, 0.05, readers=5)
        self.assertIsNotNone(cases)
        self.assertGreaterEqual(or_power(self.components, 0.05, 5, cases).power, 0.8)
        self.assertLess(or_power(self.components, 0.05, 5, cases - 1).power, 0.8)

    def test_readers_for_power_is_the_smallest_number_that_reaches_it(self):
        readers = readers_for_power(self.components, 0.05, cases=114)
        self.assertGreaterEqual(or_power(self.components, 0.05, readers, 114).power, 0.8)
        self.assertLess(or_power(self.components, 0.05, readers - 1, 114).power, 0.8)

    def test_study_plan_says_how_many_more_cases_or_readers(self):
        plan = study_plan(self.components, 0.05)
        self.assertEqual(plan.current.readers, 5)
        self.assertEqual(plan.current.cases, 114)
        self.assertEqual(plan.more_cases, cases_for_power(self.components, 0.05, 5) - 114)
        self.assertEqual(plan.more_readers, readers_for_power(self.components, 0.05, 114) - 5)
        self.assertIn(f"{plan.more_cases} more cases", plan.sentence())
        self.assertIn(f"{plan.more_readers} more readers", plan.sentence())

    def test_reader_variance_alone_can_make_more_cases_useless(self):
        capped = VarianceComponents(
            var=1e-4, cov1=5e-5, cov2=4e-5, cov3=3e-5, ms_t=0, ms_r=0, ms_tr=0, var_r=0, var_tr=0.01,
            readers=3, modalities=2, cases=100,
        )  # fmt: skip
        self.assertIsNone(cases_for_power(capped, 0.05, readers=3, max_cases=100_000))
        plan = study_plan(capped, 0.05)
        self.assertIsNone(plan.more_cases)
        self.assertIsNotNone(plan.more_readers)
        self.assertIn("more readers", plan.sentence())
        self.assertNotIn("more cases", plan.sentence())

    def test_a_zero_difference_cannot_be_planned(self):
        with self.assertRaisesMessage(ValueError, "must not be zero"):
            study_plan(self.components, 0.0)
