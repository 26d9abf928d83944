import json
import math

import numpy as np
import torch
from django.test import SimpleTestCase
from torchvision.models import vgg16

from diagnosis.networks.vf_glaucoma import (
    BLIND_SPOT_INDICES_OD,
    HFA_24_2_POINTS_OD,
    VFGlaucomaConfig,
    VFGlaucomaNet,
    render_pd_probability_plot,
)
from tests.support.networks import use_test_threads
from tests.support.training import trainable_parameters_without_gradient


class VFGlaucomaNetTests(SimpleTestCase):
    def setUp(self):
        use_test_threads()
        torch.manual_seed(0)

    def test_small_net_gives_one_probability_per_field(self):
        config = VFGlaucomaConfig.small()
        model = VFGlaucomaNet(config).eval()
        plots = torch.randn(4, 3, config.input_size, config.input_size)
        indices = torch.tensor([[95.0, -1.0, 2.0], [60.0, -12.0, 9.0], [80.0, -5.0, 5.0], [100.0, 1.0, 1.5]])
        with torch.no_grad():
            probabilities = model.predict_proba(plots, indices)
        self.assertEqual(probabilities.shape, (4,))
        self.assertTrue(bool(((probabilities > 0) & (probabilities < 1)).all()))

    def test_gradient_reaches_the_vgg_features_the_reduced_fc7_and_the_head(self):
        config = VFGlaucomaConfig.small()
        model = VFGlaucomaNet(config).train()
        plots = torch.randn(6, 3, config.input_size, config.input_size)
        indices = torch.tensor([[90.0, -2.0, 3.0]] * 3 + [[60.0, -12.0, 9.0]] * 3)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(plots, indices), torch.tensor([0.0] * 3 + [1.0] * 3)
        )
        loss.backward()
        self.assertEqual(trainable_parameters_without_gradient(model), [])
        # The three indices reach the head: their three weights get gradient.
        self.assertTrue(bool((model.head.weight.grad[0, -3:] != 0).all()))

    def test_indices_are_normalised_with_the_configured_centres_and_scales(self):
        model = VFGlaucomaNet(VFGlaucomaConfig.small())
        normalised = model.normalise_indices(torch.tensor([[80.0, -6.0, 5.0], [100.0, 1.0, 9.0]]))
        torch.testing.assert_close(normalised, torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))

    def test_full_preset_is_torchvision_vgg16_with_fc7_reduced_to_200_and_three_indices(self):
        model = VFGlaucomaNet(VFGlaucomaConfig.full())
        reference = {k: v.shape for k, v in vgg16(weights=None).state_dict().items() if k.startswith("features.")}
        ours = {k: v.shape for k, v in model.state_dict().items() if k.startswith("features.")}
        self.assertEqual(ours, reference)
        self.assertEqual(tuple(model.classifier[0].weight.shape), (4096, 512 * 7 * 7))
        self.assertEqual(tuple(model.classifier[3].weight.shape), (200, 4096))
        self.assertEqual(tuple(model.head.weight.shape), (1, 203))

    def test_config_survives_a_json_round_trip(self):
        for config in (VFGlaucomaConfig.small(), VFGlaucomaConfig.full()):
            self.assertEqual(VFGlaucomaConfig.from_dict(json.loads(json.dumps(config.to_dict()))), config)


class PDProbabilityPlotTests(SimpleTestCase):
    def cell_darkness(self, plot, x, y, eye="OD"):
        size = plot.shape[0]
        cell = size / 10
        top = (size - 8 * cell) / 2
        column = ((-x if eye == "OS" else x) + 27) / 6
        row = (21 - y) / 6
        cx, cy = int(column * cell + cell / 2), int(top + row * cell + cell / 2)
        return 1 - plot[cy, cx, 0] / 255

    def test_the_24_2_grid_has_54_points_with_the_blind_spot_at_points_26_and_35(self):
        self.assertEqual(len(HFA_24_2_POINTS_OD), 54)
        self.assertEqual([HFA_24_2_POINTS_OD[i] for i in BLIND_SPOT_INDICES_OD], [(15, 3), (15, -3)])
        rows = {}
        for _, y in HFA_24_2_POINTS_OD:
            rows[y] = rows.get(y, 0) + 1
        self.assertEqual([rows[y] for y in (21, 15, 9, 3, -3, -9, -15, -21)], [4, 6, 8, 9, 9, 8, 6, 4])

    def test_less_probable_points_are_drawn_darker(self):
        p = np.ones(54)
        p[[0, 1, 2, 3]] = [0.004, 0.009, 0.019, 0.04]  # top row, x = -9, -3, 3, 9
        plot = render_pd_probability_plot(p, size=220)
        darkness = [self.cell_darkness(plot, x, 21) for x in (-9, -3, 3, 9)]
        self.assertEqual(darkness, sorted(darkness, reverse=True))
        self.assertGreater(darkness[-1], self.cell_darkness(plot, -9, -21))

    def test_left_eyes_are_mirrored(self):
        p = np.ones(54)
        p[18] = 0.004  # (-27, 3): the nasal step of a right eye
        right = render_pd_probability_plot(p, eye="OD", size=220)
        left = render_pd_probability_plot(p, eye="OS", size=220)
        self.assertAlmostEqual(self.cell_darkness(right, -27, 3), 1.0, places=2)
        self.assertAlmostEqual(self.cell_darkness(left, -27, 3, eye="OS"), 1.0, places=2)  # drawn at x = +27
        self.assertEqual(self.cell_darkness(left, -27, 3), 0.0)  # nothing at x = -27 for a left eye
        for x, y in HFA_24_2_POINTS_OD:
            with self.subTest(point=(x, y)):
                self.assertAlmostEqual(self.cell_darkness(right, x, y), self.cell_darkness(left, x, y, eye="OS"))

    def test_blind_spot_and_missing_points_stay_blank(self):
        p = np.full(54, 0.004)
        p[0] = math.nan
        plot = render_pd_probability_plot(p, size=220)
        self.assertEqual(self.cell_darkness(plot, 15, 3), 0.0)
        self.assertEqual(self.cell_darkness(plot, -9, 21), 0.0)
        self.assertAlmostEqual(self.cell_darkness(plot, -3, 21), 1.0, places=2)

    def test_wrong_number_of_points_is_refused(self):
        with self.assertRaisesMessage(ValueError, "expected 54 PD probabilities"):
            render_pd_probability_plot([1.0] * 52)
