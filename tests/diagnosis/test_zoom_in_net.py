import dataclasses
import json

import torch
import torch.nn.functional as F
from django.test import SimpleTestCase
from torch.utils.flop_counter import FlopCounterMode

from diagnosis.networks.zoom_in_net import (
    NUM_GRADES,
    ZoomInNet,
    ZoomInNetConfig,
    crop_field_of_view_share,
    crop_positions_in_field_of_view,
    disease_evidence,
    select_attention_peaks,
)
from tests.support.networks import use_test_threads
from tests.support.training import trainable_parameters_without_gradient


class ZoomInNetOutputTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_test_threads()
        torch.manual_seed(0)
        cls.config = ZoomInNetConfig.small()
        cls.model = ZoomInNet(cls.config).eval()
        cls.images = torch.randn(3, 3, cls.config.highres_size, cls.config.highres_size)
        with torch.no_grad():
            cls.output = cls.model(cls.images)

    def test_outputs_have_one_row_per_image_and_five_grades(self):
        output, config = self.output, self.config
        self.assertEqual(output.logits.shape, (3, NUM_GRADES))
        self.assertEqual(output.m_logits.shape, (3, NUM_GRADES))
        self.assertEqual(output.a_logits.shape, (3, NUM_GRADES))
        self.assertEqual(output.c_logits.shape, (3, NUM_GRADES))
        grid = config.attention_grid_size
        self.assertEqual(output.attention_grid.shape, (3, grid, grid))
        self.assertEqual(output.attention.shape, (3, config.input_size, config.input_size))
        self.assertEqual(output.boxes.shape, (3, config.num_crops, 4))
        self.assertEqual(output.peaks.shape, (3, config.num_crops, 2))

    def test_grade_probabilities_sum_to_one_and_referable_is_grades_two_to_four(self):
        probabilities = self.output.probabilities
        torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))
        self.assertTrue(bool((probabilities >= 0).all()))
        torch.testing.assert_close(self.output.referable, probabilities[:, 2:].sum(dim=1))

    def test_attention_map_is_normalised_to_zero_one_per_image(self):
        attention = self.output.attention
        torch.testing.assert_close(attention.amin(dim=(1, 2)), torch.zeros(3))
        torch.testing.assert_close(attention.amax(dim=(1, 2)), torch.ones(3))

    def test_boxes_lie_inside_the_image_and_have_the_crop_size(self):
        boxes = self.output.boxes
        self.assertTrue(bool((boxes >= 0).all() and (boxes <= 1).all()))
        side = self.config.crop_size / self.config.highres_size
        torch.testing.assert_close(boxes[..., 2] - boxes[..., 0], torch.full((3, 4), side))
        torch.testing.assert_close(boxes[..., 3] - boxes[..., 1], torch.full((3, 4), side))

    def test_crops_are_cut_from_the_high_resolution_view_at_the_box(self):
        # A box at a known place must return exactly those high-resolution pixels (crop size = C-Net size).
        config = self.config
        image = torch.arange(config.highres_size**2, dtype=torch.float32).view(1, 1, config.highres_size, -1)
        image = image.expand(1, 3, -1, -1).contiguous()
        side = config.crop_size / config.highres_size
        boxes = torch.tensor([[[0.25, 0.5, 0.25 + side, 0.5 + side]] * config.num_crops])
        crops = self.model.crops(image, boxes)
        x0, y0 = int(0.25 * config.highres_size), int(0.5 * config.highres_size)
        expected = image[0, :, y0 : y0 + config.crop_size, x0 : x0 + config.crop_size]
        torch.testing.assert_close(crops[0], expected)

    def test_attention_grid_is_the_disease_evidence_of_the_score_maps(self):
        with torch.no_grad():
            low = self.model.low_view(self.images)
            features = self.model.m_net(low)
            a_logits, score_maps, gates = self.model.a_net(features)
        torch.testing.assert_close(self.output.attention_grid, disease_evidence(score_maps, a_logits))
        torch.testing.assert_close(gates.sum(dim=(2, 3)), torch.ones(3, NUM_GRADES))
        torch.testing.assert_close(a_logits, (score_maps * gates).sum(dim=(2, 3)))

    def test_skipping_the_crops_leaves_the_whole_image_outputs_unchanged(self):
        with torch.no_grad():
            without = self.model(self.images, read_crops=False)
        self.assertIsNone(without.c_logits)
        torch.testing.assert_close(without.m_logits, self.output.m_logits)
        torch.testing.assert_close(without.boxes, self.output.boxes)


class ZoomInNetGradientTests(SimpleTestCase):
    def test_joint_loss_sends_gradient_to_m_a_and_c_nets_and_the_fusion(self):
        use_test_threads()
        torch.manual_seed(1)
        config = ZoomInNetConfig.small()
        model = ZoomInNet(config).train()
        images = torch.randn(4, 3, config.highres_size, config.highres_size)
        targets = torch.tensor([0, 1, 2, 4])
        output = model(images)
        loss = sum(
            F.cross_entropy(logits, targets)
            for logits in (output.logits, output.m_logits, output.a_logits, output.c_logits)
        )
        loss.backward()
        self.assertEqual(trainable_parameters_without_gradient(model), [])
        for part in ("m_net", "m_head", "a_net.score", "a_net.gate", "c_net", "c_head", "fusion"):
            with self.subTest(part=part):
                grads = [p.grad.abs().sum() for name, p in model.named_parameters() if name.startswith(part)]
                self.assertGreater(len(grads), 0)
                self.assertGreater(float(sum(grads)), 0.0)


class PeakSelectionTests(SimpleTestCase):
    def test_later_peaks_never_fall_inside_an_earlier_suppressed_area(self):
        generator = torch.Generator().manual_seed(3)
        for size, box, scale in [(8, 0.25, 1.0), (16, 0.21875, 1.0), (8, 0.25, 1.5), (12, 0.2, 0.5)]:
            attention = torch.rand(50, size, size, generator=generator)
            peaks, boxes = select_attention_peaks(attention, 4, box, scale)
            centres = (peaks.float() + 0.5) / size  # row, column as fractions
            box_centres = torch.stack([(boxes[..., 1] + boxes[..., 3]) / 2, (boxes[..., 0] + boxes[..., 2]) / 2], -1)
            reach = box / 2 * scale
            for image in range(50):
                for later in range(1, 4):
                    for earlier in range(later):
                        distance = (centres[image, later] - box_centres[image, earlier]).abs()
                        with self.subTest(size=size, image=image, earlier=earlier, later=later):
                            self.assertTrue(bool((distance > reach + 1e-6).any()))

    def test_peaks_come_in_order_of_attention_among_the_cells_still_allowed(self):
        attention = torch.zeros(1, 8, 8)
        attention[0, 2, 2] = 10.0
        attention[0, 2, 3] = 9.0  # next to the first peak: suppressed
        attention[0, 6, 6] = 8.0
        attention[0, 0, 7] = 7.0
        attention[0, 5, 1] = 6.0
        peaks, _ = select_attention_peaks(attention, 4, 0.25)
        self.assertEqual(peaks[0].tolist(), [[2, 2], [6, 6], [0, 7], [5, 1]])

    def test_box_at_the_border_is_shifted_inside_the_view(self):
        attention = torch.zeros(1, 8, 8)
        attention[0, 0, 7] = 1.0
        _, boxes = select_attention_peaks(attention, 1, 0.25)
        self.assertEqual(boxes[0, 0].tolist(), [0.75, 0.0, 1.0, 0.25])

    def test_a_fully_suppressed_map_falls_back_to_cells_not_yet_picked(self):
        attention = torch.arange(4.0).view(1, 2, 2)
        peaks, _ = select_attention_peaks(attention, 4, 1.0)  # one box covers everything
        self.assertEqual(sorted(map(tuple, peaks[0].tolist())), [(0, 0), (0, 1), (1, 0), (1, 1)])


class ZoomInNetConfigTests(SimpleTestCase):
    def test_config_survives_a_json_round_trip(self):
        for config in (
            ZoomInNetConfig.small(),
            ZoomInNetConfig.full(),
            dataclasses.replace(ZoomInNetConfig.small(), num_crops=2),
        ):
            with self.subTest(config=config):
                self.assertEqual(ZoomInNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))), config)

    def test_unknown_config_fields_are_refused(self):
        data = ZoomInNetConfig.small().to_dict() | {"depth": 50}
        with self.assertRaisesMessage(ValueError, "unknown ZoomInNetConfig fields: ['depth']"):
            ZoomInNetConfig.from_dict(data)

    def test_inconsistent_sizes_are_refused(self):
        with self.assertRaisesMessage(ValueError, "crop_size"):
            ZoomInNetConfig(highres_size=256, crop_size=300)
        with self.assertRaisesMessage(ValueError, "multiple of M-Net's stride 32"):
            ZoomInNetConfig(input_size=500)

    def test_full_preset_is_resnet18_at_512_px_with_four_224_px_crops_about_33_gflops(self):
        use_test_threads()
        config = ZoomInNetConfig.full()
        model = ZoomInNet(config).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            output = model(torch.randn(1, 3, config.highres_size, config.highres_size))
        self.assertEqual(output.attention_grid.shape, (1, 16, 16))
        self.assertAlmostEqual(counter.get_total_flops() / 1e9, 33.5, delta=0.5)


class FieldOfViewTests(SimpleTestCase):
    """Attention and crops stay on the retina, not on the black border of a real photograph."""

    def setUp(self):
        use_test_threads()
        torch.manual_seed(0)

    def test_crop_share_is_one_in_the_middle_of_a_disc_and_small_in_its_corners(self):
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
        disc = ((xx**2 + yy**2) < 0.8**2).float()[None]
        share = crop_field_of_view_share(disc, (8, 8), 0.25)
        self.assertAlmostEqual(float(share[0, 3, 3]), 1.0)
        self.assertLess(float(share[0, 0, 0]), 0.2)
        allowed = crop_positions_in_field_of_view(share)
        self.assertFalse(bool(allowed[0, 0, 0]))
        self.assertTrue(bool(allowed[0, 3, 3]))
        # An image with no retina at all keeps every position rather than none.
        self.assertTrue(bool(crop_positions_in_field_of_view(torch.zeros(1, 8, 8)).all()))

    def test_peaks_are_taken_only_from_allowed_cells(self):
        attention = torch.zeros(1, 8, 8)
        attention[0, 0, :] = 10.0  # the strongest evidence on the top edge
        allowed = torch.ones(1, 8, 8, dtype=torch.bool)
        allowed[0, :2] = False
        peaks, _ = select_attention_peaks(attention, 4, 0.25, allowed=allowed)
        self.assertTrue(bool((peaks[0, :, 0] >= 2).all()))

    def test_on_a_shipped_hrf_photograph_the_map_and_every_crop_lie_in_the_field_of_view(self):
        from unittest import mock

        from PIL import Image

        from demo.training import DEMO_DATA
        from diagnosis.networks.inference import preprocess_fundus
        from diagnosis.networks.zoom_in_net import field_of_view

        config = ZoomInNetConfig.small()
        model = ZoomInNet(config).eval()
        photo = preprocess_fundus(Image.open(DEMO_DATA / "hrf" / "01_dr.jpg"), config)
        highres = photo.highres[None]

        def border_evidence(score_maps, a_logits):  # the strongest "evidence" on the top and bottom rows
            grid = torch.zeros(score_maps.shape[0], *score_maps.shape[2:])
            grid[:, 0] = grid[:, -1] = 5.0
            return grid + torch.rand_like(grid)

        with mock.patch("diagnosis.networks.zoom_in_net.disease_evidence", border_evidence), torch.no_grad():
            output = model(highres)
        mask = F.adaptive_avg_pool2d(field_of_view(model.low_view(highres))[:, None], 64)[0, 0] > 0.5
        for x0, y0, x1, y1 in output.boxes[0].tolist():
            box = mask[round(y0 * 64) : round(y1 * 64), round(x0 * 64) : round(x1 * 64)]
            self.assertGreaterEqual(float(box.float().mean()), 0.9)
        outside = field_of_view(model.low_view(highres))[0] == 0
        self.assertTrue(bool(outside.any()))  # the letterboxed photograph has a black border
        self.assertEqual(float(output.attention[0][outside].abs().max()), 0.0)
        self.assertGreater(float(output.attention[0].max()), 0.5)
