import json

import torch
from django.test import SimpleTestCase
from torchvision.models import vgg16

from diagnosis.networks.vf_glaucoma import (
    VFGlaucomaConfig,
    VFGlaucomaNet,
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
