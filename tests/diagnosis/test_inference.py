import io
import os
from unittest import mock

import numpy as np
import torch
from django.test import SimpleTestCase
from PIL import Image

from diagnosis.networks.checkpoints import CheckpointMismatch, load_checkpoint, load_state_dict_checked, save_checkpoint
from diagnosis.networks.inference import (
    FundusPrediction,
    ItemError,
    ViewGeometry,
    VisualFieldItem,
    VisualFieldPrediction,
    autocast_dtype,
    configure_threads,
    predict_fundus,
    predict_visual_fields,
    preprocess_fundus,
    run_in_batches,
    select_device,
)
from diagnosis.networks.synthetic import generate_fundus
from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig, VFGlaucomaNet
from diagnosis.networks.zoom_in_net import ZoomInNet, ZoomInNetConfig
from tests.support.networks import pd_plot, use_test_threads


def widescreen_photo() -> np.ndarray:
    """A generated fundus in a 3:2 frame, as cameras deliver them."""
    fundus = generate_fundus(7, size=200, grade=2).image
    frame = np.zeros((200, 300, 3), dtype=np.uint8)
    frame[:, 50:250] = fundus
    return frame


class FundusBatchTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_test_threads()
        torch.manual_seed(0)
        cls.model = ZoomInNet(ZoomInNetConfig.small()).eval()
        cls.photo = widescreen_photo()

    def test_a_bad_item_fails_alone_and_the_others_get_predictions(self):
        items = [self.photo, np.zeros((10, 10, 3), dtype=np.uint8), "not an image", Image.fromarray(self.photo)]
        results = predict_fundus(self.model, items, batch_size=2)
        self.assertEqual(len(results), 4)
        self.assertIsInstance(results[0], FundusPrediction)
        self.assertIsInstance(results[3], FundusPrediction)
        self.assertEqual((results[1].index, results[1].error), (1, "InvalidInput"))
        self.assertIn("below the 32 px minimum", results[1].message)
        self.assertEqual((results[2].index, results[2].error), (2, "InvalidInput"))
        np.testing.assert_allclose(results[0].grade_probabilities, results[3].grade_probabilities, rtol=1e-5)

    def test_predictions_do_not_depend_on_the_batch_they_ran_in(self):
        other = generate_fundus(8, size=256, grade=4).image
        batched = predict_fundus(self.model, [self.photo, other], batch_size=2)
        alone = predict_fundus(self.model, [self.photo, other], batch_size=1)
        for together, single in zip(batched, alone, strict=True):
            np.testing.assert_allclose(together.grade_probabilities, single.grade_probabilities, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(together.boxes, single.boxes, atol=1e-3)

    def test_prediction_is_in_the_photographs_own_coordinates(self):
        (prediction,) = predict_fundus(self.model, [self.photo])
        self.assertAlmostEqual(sum(prediction.grade_probabilities), 1.0, places=5)
        self.assertAlmostEqual(prediction.referable_probability, sum(prediction.grade_probabilities[2:]), places=5)
        self.assertEqual(prediction.attention.shape, (200, 300))
        self.assertLessEqual(float(prediction.attention.max()), 1.0)
        self.assertGreaterEqual(float(prediction.attention.min()), 0.0)
        self.assertEqual(len(prediction.boxes), 4)
        for x0, y0, x1, y1 in prediction.boxes:
            self.assertTrue(0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 200)
        (small,) = predict_fundus(self.model, [self.photo], attention_max_side=150)
        self.assertEqual(small.attention.shape, (100, 150))

    def test_view_boxes_map_back_through_the_square_padding(self):
        geometry = ViewGeometry(original_width=300, original_height=200)  # padded 50 px above and below
        self.assertEqual(geometry.box_to_original((0.5, 0.5, 0.6, 0.6)), (150.0, 100.0, 180.0, 130.0))
        self.assertEqual(geometry.box_to_original((0.0, 0.0, 0.2, 0.1)), (0.0, 0.0, 60.0, 0.0))

    def test_preprocessing_pads_to_a_square_and_resizes_to_the_high_resolution_view(self):
        fundus_input = preprocess_fundus(self.photo, self.model.config)
        self.assertEqual(fundus_input.highres.shape, (3, 256, 256))
        # The padding rows are black: normalised black is -mean/std.
        torch.testing.assert_close(
            fundus_input.highres[:, 0, 0], torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])
        )

    def test_items_of_a_failing_batch_are_retried_one_by_one(self):
        def forward(batch):
            if "poison" in batch:
                raise RuntimeError("poisoned batch")
            return [len(item) for item in batch]

        results = run_in_batches(["ab", "poison", "abcd", "x"], lambda item: item, forward, batch_size=2)
        self.assertEqual(results[0], 2)
        self.assertEqual(results[1], ItemError(1, "RuntimeError", "poisoned batch"))
        self.assertEqual(results[2:], [4, 1])

    def test_an_item_error_returned_by_forward_gets_the_items_index(self):
        results = run_in_batches(
            [1.0, float("nan"), 2.0],
            lambda value: value,
            lambda batch: [v if v == v else ItemError(-1, "NonFiniteOutput", "nan") for v in batch],
            batch_size=3,
        )
        self.assertEqual(results, [1.0, ItemError(1, "NonFiniteOutput", "nan"), 2.0])


class VisualFieldBatchTests(SimpleTestCase):
    def test_a_field_with_impossible_indices_fails_alone(self):
        use_test_threads()
        torch.manual_seed(0)
        model = VFGlaucomaNet(VFGlaucomaConfig.small())
        plot = pd_plot([1.0] * 54, size=128).transpose(1, 2, 0).copy()
        items = [
            VisualFieldItem(plot, vfi=95.0, md=-1.5, psd=2.0),
            VisualFieldItem(plot, vfi=140.0, md=-1.5, psd=2.0),
            VisualFieldItem(plot, vfi=70.0, md=float("nan"), psd=8.0),
            VisualFieldItem(Image.fromarray(plot), vfi=np.float32(70.0), md=-9.0, psd=8.0),
        ]
        results = predict_visual_fields(model, items, batch_size=4)
        self.assertIsInstance(results[0], VisualFieldPrediction)
        self.assertEqual(
            (results[1].error, results[1].message), ("InvalidInput", "VFI must be a percentage, got 140.0")
        )
        self.assertEqual(results[2].error, "InvalidInput")
        self.assertIsInstance(results[3], VisualFieldPrediction)
        self.assertTrue(0 < results[3].glaucoma_probability < 1)


class CheckpointTests(SimpleTestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = ZoomInNet(ZoomInNetConfig.small()).eval()

    def test_a_saved_network_is_rebuilt_from_its_config_with_identical_outputs(self):
        buffer = io.BytesIO()
        save_checkpoint(self.model, buffer, metadata={"seed": 3, "kappa": 0.8})
        restored, metadata = load_checkpoint(buffer.getvalue(), expected_architecture="zoom_in_net")
        self.assertEqual(metadata, {"seed": 3, "kappa": 0.8})
        self.assertEqual(restored.config, self.model.config)
        images = torch.randn(2, 3, 256, 256)
        with torch.no_grad():
            torch.testing.assert_close(restored(images).logits, self.model(images).logits)

    def test_weights_for_another_width_are_refused_with_every_mismatch_listed(self):
        other = ZoomInNet(ZoomInNetConfig(**{**ZoomInNetConfig.small().to_dict(), "m_widths": [16, 32, 64]}))
        with self.assertRaises(CheckpointMismatch) as caught:
            load_state_dict_checked(other, self.model.state_dict(), context="zoom_in_net")
        message = str(caught.exception)
        self.assertIn("checkpoint does not fit the architecture (zoom_in_net)", message)
        self.assertIn(
            "49 shape mismatch(es): a_net.gate.0.weight (model (48, 64, 1, 1), checkpoint (48, 96, 1, 1))", message
        )
        self.assertIn("... and 41 more", message)
        self.assertEqual((caught.exception.missing, caught.exception.unexpected), ([], []))
        self.assertIn(("m_net.stem.0.weight", (16, 3, 7, 7), (24, 3, 7, 7)), caught.exception.mismatched)

    def test_missing_and_unexpected_keys_are_named(self):
        state = dict(self.model.state_dict())
        state["extra.weight"] = state.pop("fusion.1.weight")
        with self.assertRaises(CheckpointMismatch) as caught:
            load_state_dict_checked(self.model, state)
        self.assertEqual(caught.exception.missing, ["fusion.1.weight"])
        self.assertEqual(caught.exception.unexpected, ["extra.weight"])
        self.assertIn("missing 1 key(s): fusion.1.weight; unexpected 1 key(s): extra.weight", str(caught.exception))

    def test_a_checkpoint_of_another_architecture_or_no_checkpoint_is_refused(self):
        buffer = io.BytesIO()
        save_checkpoint(VFGlaucomaNet(VFGlaucomaConfig.small()), buffer)
        with self.assertRaisesMessage(ValueError, "holds a 'vf_glaucoma' network, expected 'zoom_in_net'"):
            load_checkpoint(buffer.getvalue(), expected_architecture="zoom_in_net")
        plain = io.BytesIO()
        torch.save(self.model.state_dict(), plain)
        with self.assertRaisesMessage(ValueError, "not a Visus network checkpoint"):
            load_checkpoint(plain.getvalue())


class DeviceAndThreadTests(SimpleTestCase):
    def test_cpu_runs_in_full_precision_and_cuda_is_chosen_when_present(self):
        self.assertIsNone(autocast_dtype(torch.device("cpu")))
        self.assertEqual(select_device("cpu"), torch.device("cpu"))
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        self.assertEqual(select_device().type, expected)
        if not torch.cuda.is_available():
            with self.assertRaisesMessage(RuntimeError, "CUDA is not available"):
                select_device("cuda")

    def test_threads_follow_cores_per_worker_and_busy_waiting_openmp_is_flagged(self):
        before = torch.get_num_threads()
        self.addCleanup(torch.set_num_threads, before)
        with mock.patch.dict(os.environ, {"OMP_WAIT_POLICY": "PASSIVE"}):
            settings = configure_threads(1)
        self.assertEqual((settings.threads, torch.get_num_threads()), (1, 1))
        with mock.patch("diagnosis.networks.inference.available_cores", return_value=16):
            with mock.patch.dict(os.environ, {"OMP_WAIT_POLICY": "PASSIVE"}):
                self.assertEqual(configure_threads(concurrency=4).threads, 4)
        with mock.patch.dict(os.environ, {"OMP_WAIT_POLICY": "ACTIVE"}):
            with self.assertWarnsMessage(RuntimeWarning, "OMP_WAIT_POLICY is not PASSIVE"):
                configure_threads(1)
