import sys

import torch
from django.test import SimpleTestCase

from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig, VFGlaucomaNet
from diagnosis.networks.zoom_in_net import ZoomInNet, ZoomInNetConfig
from diagnosis.training.core import (
    DRTrainingPlan,
    VFTrainingPlan,
    fundus_tensors,
    predict_zoom_in_net,
    roc_auc,
    seed_everything,
    train_vf_glaucoma,
    train_zoom_in_net,
)
from diagnosis.training.vf_indices import indices_only_scores, warm_start_index_head
from tests.support.networks import fundus_set, glaucoma_like_fields, use_test_threads
from tests.support.training import lesion_recall, random_box_recall, train_demo_dr_model

ONE_EPOCH_EACH = DRTrainingPlan(m_epochs=1, a_epochs=1, c_epochs=1, joint_epochs=1, batch_size=8)
CPU = torch.device("cpu")  # the reproducibility promise is for CPU runs


def trained_weights(seed: int, plan: DRTrainingPlan = ONE_EPOCH_EACH, progress=None) -> dict[str, torch.Tensor]:
    images, grades = fundus_tensors(fundus_set(24, seed=21))
    seed_everything(seed)
    model = ZoomInNet(ZoomInNetConfig.small())
    train_zoom_in_net(model, images, grades, plan=plan, seed=seed, device=CPU, progress=progress)
    return {key: value.clone() for key, value in model.state_dict().items()}


class ReproducibleTrainingTests(SimpleTestCase):
    def setUp(self):
        use_test_threads()

    def test_two_runs_with_the_same_seed_give_identical_weights(self):
        first, second = trained_weights(5), trained_weights(5)
        self.assertEqual(first.keys(), second.keys())
        for key in first:
            with self.subTest(key=key):
                torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)

    def test_another_seed_gives_other_weights(self):
        first, other = trained_weights(5), trained_weights(6)
        self.assertFalse(torch.equal(first["fusion.1.weight"], other["fusion.1.weight"]))

    def test_stages_run_in_the_papers_order_and_report_progress(self):
        reports = []
        trained_weights(5, progress=reports.append)
        stages = [report.stage for report in reports]
        self.assertEqual(list(dict.fromkeys(stages)), ["m", "a", "c", "joint"])
        self.assertEqual(len(stages), 4 * 3)  # 24 images, batches of 8
        self.assertEqual([(r.step, r.steps) for r in reports[:3]], [(1, 3), (2, 3), (3, 3)])

    def test_later_stages_leave_the_frozen_parts_untouched(self):
        images, grades = fundus_tensors(fundus_set(24, seed=21))
        model = ZoomInNet(ZoomInNetConfig.small())
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train_zoom_in_net(
            model, images, grades, plan=DRTrainingPlan(m_epochs=0, a_epochs=1, c_epochs=1, batch_size=8), device=CPU
        )
        after = model.state_dict()
        for key in before:
            changed = not torch.equal(before[key], after[key])
            with self.subTest(key=key):
                if key.startswith(("m_net.", "m_head.")):
                    self.assertFalse(changed)  # weights and batch-norm statistics alike
                elif key.startswith(("a_net.", "c_net.", "fusion.")) and key.endswith("weight"):
                    self.assertTrue(changed)

    def test_images_in_the_wrong_form_are_refused(self):
        model = ZoomInNet(ZoomInNetConfig.small())
        with self.assertRaisesMessage(ValueError, "images must be N x 3 x 256^2 uint8"):
            train_zoom_in_net(model, torch.zeros(2, 3, 256, 256), torch.tensor([0, 1]))
        with self.assertRaisesMessage(ValueError, "grades must be one ICDR grade"):
            train_zoom_in_net(model, torch.zeros(2, 3, 256, 256, dtype=torch.uint8), torch.tensor([0, 7]))


class AttentionLocalisationTests(SimpleTestCase):
    """Trained with image-level grades only, the crops must land on the generated lesions."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_test_threads()
        config = ZoomInNetConfig.small()
        images, grades = fundus_tensors(fundus_set(400, seed=0))
        seed_everything(0)
        cls.model = ZoomInNet(config)
        # C-Net does not influence where the crops go, so only the M-Net and A-Net stages are trained.
        plan = DRTrainingPlan(m_epochs=12, a_epochs=4, c_epochs=0)
        cls.training = train_zoom_in_net(cls.model, images, grades, plan=plan, seed=0, device=CPU)
        cls.held_out = [s for s in fundus_set(120, seed=99) if s.lesions]
        held_out_images, _ = fundus_tensors(cls.held_out)
        predictions = predict_zoom_in_net(cls.model, held_out_images)
        side = config.highres_size
        boxes = [[[v * side for v in box] for box in image_boxes] for image_boxes in predictions.boxes.tolist()]
        centres = [[lesion.centre for lesion in sample.lesions] for sample in cls.held_out]
        cls.recall = lesion_recall(boxes, centres)
        cls.baseline = random_box_recall(cls.held_out, config.num_crops, config.crop_size, draws=50)
        print(
            f"\nlocalisation: {config.num_crops} crops cover {cls.recall:.1%} of {sum(map(len, centres))} lesions "
            f"in {len(cls.held_out)} held-out images; random boxes in the fundus {cls.baseline:.1%} "
            f"(training {cls.training.seconds:.0f} s)",
            file=sys.stderr,
        )

    def test_crops_cover_far_more_lesions_than_random_boxes_in_the_fundus(self):
        self.assertGreater(self.recall, self.baseline + 0.15)
        self.assertGreater(self.recall, 1.5 * self.baseline)

    def test_training_lowered_the_loss_of_both_stages(self):
        for stage in ("m", "a"):
            losses = [entry["loss"] for entry in self.training.history if entry["stage"] == stage]
            with self.subTest(stage=stage):
                self.assertLess(losses[-1], 0.7 * losses[0])


class VisualFieldTrainingTests(SimpleTestCase):
    def test_the_small_vf_net_learns_hemifield_defects_from_the_plot(self):
        """The plot must add to the indices: the net beats an indices-only logistic regression fitted on the
        same training fields (with every plot blanked the two are equal, about 0.93, and this fails)."""
        use_test_threads()
        config = VFGlaucomaConfig.small()
        train = glaucoma_like_fields(160, seed=1, size=config.input_size)
        held_out = glaucoma_like_fields(80, seed=2, size=config.input_size)
        seed_everything(0)
        model = VFGlaucomaNet(config)
        result = train_vf_glaucoma(
            model, *train, plan=VFTrainingPlan(epochs=15, learning_rate=1e-3), seed=0, device=CPU, validation=held_out
        )
        indices_only = roc_auc(held_out[2].numpy(), indices_only_scores(model, (train[1], train[2]), held_out[1]))
        self.assertGreater(result.metrics["auc"], indices_only + 0.04)
        self.assertEqual(set(result.metrics), {"accuracy", "n", "sensitivity", "specificity", "auc"})

    def test_training_starts_from_the_indices_only_model(self):
        config = VFGlaucomaConfig.small()
        _, indices, labels = glaucoma_like_fields(40, seed=3, size=config.input_size)
        model = VFGlaucomaNet(config)
        warm_start_index_head(model, indices, labels)
        weights = model.head.weight[0, -3:].detach()
        # Glaucoma: lower VFI, lower (more negative) MD, higher PSD.
        self.assertLess(float(weights[0]), 0)
        self.assertLess(float(weights[1]), 0)
        self.assertGreater(float(weights[2]), 0)


class DemoModelTests(SimpleTestCase):
    def test_demo_training_returns_a_model_and_held_out_metrics(self):
        use_test_threads()
        tiny = DRTrainingPlan(m_epochs=1, a_epochs=1, c_epochs=1, batch_size=8)
        demo = train_demo_dr_model(seed=3, train_size=20, validation_size=15, plan=tiny, device=CPU)
        self.assertIsInstance(demo.model, ZoomInNet)
        self.assertEqual(set(demo.metrics), {"kappa", "accuracy", "n", "referable_auc"})
        self.assertEqual(demo.metrics["n"], 15.0)
        self.assertFalse(demo.training.stopped_early)

    def test_demo_training_stops_when_the_time_budget_is_spent(self):
        tiny = DRTrainingPlan(m_epochs=1, a_epochs=1, c_epochs=1, batch_size=8)
        demo = train_demo_dr_model(seed=3, train_size=20, validation_size=10, plan=tiny, time_budget_s=0.0, device=CPU)
        self.assertTrue(demo.training.stopped_early)
        self.assertEqual(demo.metrics["n"], 10.0)
