import math

import numpy as np
from django.test import SimpleTestCase

from diagnosis.networks.fusion import (
    FUNDUS,
    OCT_RNFL,
    VISUAL_FIELD,
    FusionWeights,
    GlaucomaEvidence,
    fit_fusion_weights,
    fuse_glaucoma,
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
