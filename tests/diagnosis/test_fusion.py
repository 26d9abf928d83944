import math

import numpy as np
from django.test import SimpleTestCase

from diagnosis.networks.fusion import (
    FUNDUS,
    OCT_RNFL,
    VISUAL_FIELD,
    FusionWeights,
    GlaucomaEvidence,
    fit_fusion_calibration,
    fit_fusion_weights,
    fuse_glaucoma,
    platt_scaling,
    rnfl_log_likelihood_ratio,
)


def logit(p):
    return math.log(p / (1 - p))


class GlaucomaFusionTests(SimpleTestCase):
    def test_a_single_network_output_is_returned_unchanged_at_the_default_weights(self):
        for evidence, probability in [
            (GlaucomaEvidence(fundus_probability=0.83), 0.83),
            (GlaucomaEvidence(vf_probability=0.27, vf_reliable=True), 0.27),
            (GlaucomaEvidence(fundus_probability=np.float32(0.5)), 0.5),  # numpy outputs are numbers too
        ]:
            with self.subTest(evidence=evidence):
                fused = fuse_glaucoma(evidence)
                self.assertAlmostEqual(fused.probability, probability)
                self.assertEqual(len(fused.used), 1)

    def test_rnfl_alone_gives_a_probability_from_thickness(self):
        thin = fuse_glaucoma(GlaucomaEvidence(rnfl_thickness_um=60.0))
        thick = fuse_glaucoma(GlaucomaEvidence(rnfl_thickness_um=105.0))
        midpoint = fuse_glaucoma(GlaucomaEvidence(rnfl_thickness_um=82.5))
        self.assertEqual(thin.used, (OCT_RNFL,))
        # LLR = (70 - 95) / 11^2 * (t - 82.5): 60 um -> +4.65 (clipped to 4), 105 um -> -4.65 (clipped)
        self.assertAlmostEqual(thin.probability, 1 / (1 + math.exp(-4.0)))
        self.assertAlmostEqual(thick.probability, 1 / (1 + math.exp(4.0)))
        self.assertAlmostEqual(midpoint.probability, 0.5)
        self.assertAlmostEqual(rnfl_log_likelihood_ratio(76.0, FusionWeights()), 25 / 121 * 6.5)

    def test_an_unreliable_visual_field_contributes_nothing(self):
        with_unreliable = fuse_glaucoma(
            GlaucomaEvidence(fundus_probability=0.7, vf_probability=0.99, vf_reliable=False)
        )
        fundus_only = fuse_glaucoma(GlaucomaEvidence(fundus_probability=0.7))
        self.assertAlmostEqual(with_unreliable.probability, fundus_only.probability)
        self.assertEqual(with_unreliable.used, (FUNDUS,))
        self.assertEqual(with_unreliable.excluded, {VISUAL_FIELD: "visual field unreliable"})
        self.assertNotIn(VISUAL_FIELD, with_unreliable.contributions)

    def test_a_visual_field_without_stated_reliability_is_refused(self):
        with self.assertRaisesMessage(ValueError, "vf_reliable must be stated"):
            fuse_glaucoma(GlaucomaEvidence(vf_probability=0.9))

    def test_no_usable_modality_gives_no_probability_rather_than_the_prior(self):
        for evidence in [
            GlaucomaEvidence(),
            GlaucomaEvidence(vf_probability=0.9, vf_reliable=False),
            GlaucomaEvidence(rnfl_thickness_um=0.0),
        ]:
            with self.subTest(evidence=evidence):
                fused = fuse_glaucoma(evidence)
                self.assertIsNone(fused.probability)
                self.assertEqual(fused.used, ())
        self.assertIn(OCT_RNFL, fuse_glaucoma(GlaucomaEvidence(rnfl_thickness_um=0.0)).excluded)

    def test_agreeing_modalities_add_up_but_less_than_if_they_were_independent(self):
        both = fuse_glaucoma(GlaucomaEvidence(fundus_probability=0.8, vf_probability=0.8, vf_reliable=True))
        independent = 1 / (1 + math.exp(-2 * logit(0.8)))
        self.assertGreater(both.probability, 0.8)
        self.assertLess(both.probability, independent)
        # Two modalities, rho = 0.3: each log-likelihood ratio is discounted by 1 / 1.3.
        self.assertAlmostEqual(logit(both.probability), 2 * logit(0.8) / 1.3)
        self.assertEqual(both.used, (FUNDUS, VISUAL_FIELD))

    def test_disagreeing_modalities_pull_towards_the_middle(self):
        fused = fuse_glaucoma(
            GlaucomaEvidence(fundus_probability=0.2, vf_probability=0.9, vf_reliable=True, rnfl_thickness_um=70.0)
        )
        self.assertEqual(fused.used, (FUNDUS, VISUAL_FIELD, OCT_RNFL))
        self.assertLess(fused.contributions[FUNDUS], 0)
        self.assertGreater(fused.contributions[VISUAL_FIELD], 0)
        expected = (logit(0.2) + logit(0.9) + 25 / 121 * 12.5) / (1 + 0.3 * 2)
        self.assertAlmostEqual(logit(fused.probability), expected)

    def test_fitted_weights_favour_the_informative_modality(self):
        rng = np.random.default_rng(0)
        evidence, labels = [], []
        for _ in range(400):
            label = int(rng.uniform() < 0.4)
            informative = 1 / (1 + math.exp(-(2.5 if label else -2.5) - rng.normal(0, 1.0)))
            noise = rng.uniform(0.05, 0.95)
            evidence.append(GlaucomaEvidence(fundus_probability=noise, vf_probability=informative, vf_reliable=True))
            labels.append(label)
        fitted = fit_fusion_weights(evidence, labels)
        self.assertGreater(fitted.vf_weight, 1.5 * abs(fitted.fundus_weight))
        self.assertAlmostEqual(fitted.rnfl_weight, 1.0)  # no RNFL data: only the penalty acts on it
        self.assertLess(fitted.prior_probability, 0.5)
        self.assertEqual(FusionWeights.from_dict(fitted.to_dict()), fitted)


class FusionCalibrationCoreTests(SimpleTestCase):
    def test_default_weights_say_they_are_uncalibrated_at_a_50_percent_prior(self):
        fused = fuse_glaucoma(GlaucomaEvidence(rnfl_thickness_um=62.0))
        self.assertFalse(fused.calibrated)
        self.assertEqual(fused.prior_probability, 0.5)
        self.assertGreater(fused.probability, 0.98)  # the undisclosed-prior number the page no longer shows

    def test_fitting_on_a_low_prevalence_population_gives_its_bayes_posterior_not_the_50_percent_one(self):
        rng = np.random.default_rng(1)
        labels = (rng.uniform(size=4000) < 0.05).astype(int)
        thickness = np.where(labels == 1, rng.normal(70, 11, labels.size), rng.normal(95, 11, labels.size))
        evidence = [GlaucomaEvidence(rnfl_thickness_um=float(t)) for t in thickness]
        fit = fit_fusion_calibration(evidence, labels.tolist())
        self.assertTrue(fit.weights.calibrated)
        self.assertEqual((fit.eyes, fit.positives), (4000, int(labels.sum())))
        self.assertAlmostEqual(fit.weights.prior_probability, labels.mean(), delta=0.02)
        fused = fuse_glaucoma(GlaucomaEvidence(rnfl_thickness_um=62.0), fit.weights)
        # Bayes: LR(62 um) = exp(25/121 * 20.5) = 69; at 5% prevalence the posterior is about 0.78.
        bayes = 1 / (1 + 19 / math.exp(25 / 121 * 20.5))
        self.assertAlmostEqual(fused.probability, bayes, delta=0.08)
        self.assertTrue(fused.calibrated)
        # Calibration in the large: predicted probabilities average to the observed prevalence.
        mean = np.mean([fuse_glaucoma(e, fit.weights).probability for e in evidence[:1000]])
        self.assertAlmostEqual(mean, labels[:1000].mean(), delta=0.02)

    def test_platt_scaling_shrinks_an_overconfident_network(self):
        rng = np.random.default_rng(2)
        labels = (rng.uniform(size=2000) < 0.3).astype(int)
        true_logit = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 1.0, labels.size)
        overconfident = 1 / (1 + np.exp(-4 * true_logit))  # four times the log-odds it should give
        slope, _ = platt_scaling(np.log(overconfident / (1 - overconfident)), labels)
        self.assertAlmostEqual(slope, 2 / 4, delta=0.1)  # true LLR slope is 2 (d' = 2, var 1), / 4

    def test_too_few_eyes_of_a_class_are_refused_with_the_counts(self):
        evidence = [GlaucomaEvidence(fundus_probability=p) for p in (0.9, 0.8, 0.2, 0.1, 0.3)]
        with self.assertRaisesMessage(ValueError, "fundus: 5 eyes, 2 glaucomatous"):
            fit_fusion_calibration(evidence, [1, 1, 0, 0, 0])

    def test_fitted_weights_survive_a_json_round_trip(self):
        evidence = [GlaucomaEvidence(fundus_probability=p) for p in (0.9, 0.8, 0.7, 0.2, 0.1, 0.3, 0.6)]
        fitted = fit_fusion_calibration(evidence, [1, 1, 1, 0, 0, 0, 1]).weights
        import json

        self.assertEqual(FusionWeights.from_dict(json.loads(json.dumps(fitted.to_dict()))), fitted)
        with self.assertRaisesMessage(ValueError, "platt['retina']"):
            FusionWeights(platt={"retina": [1.0, 0.0, 0.5]})

    def test_another_prevalence_changes_only_the_prior_term(self):
        evidence = GlaucomaEvidence(fundus_probability=0.9, rnfl_thickness_um=70.0)
        base = fuse_glaucoma(evidence)
        moved = fuse_glaucoma(evidence, FusionWeights().with_prior(0.05))
        self.assertEqual(moved.contributions, base.contributions)
        self.assertAlmostEqual(logit(moved.probability) - logit(base.probability), logit(0.05))
