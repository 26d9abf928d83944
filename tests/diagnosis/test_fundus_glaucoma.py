"""Glaucoma from fundus photographs: disc locator, network, training, registry, workers and fusion."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import SimpleTestCase, TestCase
from django.urls import reverse
from PIL import Image

from diagnosis.models import InferenceJob, ModelVersion, Prediction
from diagnosis.networks.checkpoints import load_checkpoint
from diagnosis.networks.fundus_glaucoma import FundusGlaucomaConfig, FundusGlaucomaNet, locate_optic_disc
from diagnosis.networks.fusion import GlaucomaEvidence, fuse_glaucoma
from diagnosis.networks.inference import (
    normalise_images,
    predict_fundus_glaucoma,
    prepare_for_inference,
    square_view,
)
from diagnosis.networks.synthetic import (
    GLAUCOMA_CUP_TO_DISC,
    generate_fundus,
    generate_fundus_set,
    generate_glaucoma_fundus_set,
)
from diagnosis.registry import model_load
from diagnosis.services import inference_run
from diagnosis.training.core import fundus_tensors
from diagnosis.training.runner import demo_fundus_glaucoma_plan, train_fundus_glaucoma_model
from tests.support.inference import InferenceFixture
from tests.support.networks import use_test_threads
from tests.support.registry import checkpoint_bytes, register_fundus_glaucoma_model
from tests.support.training import trainable_parameters_without_gradient
from trials.services import case_set_status


def disc_hit_rate(samples, boxes: torch.Tensor, size: int) -> float:
    hits = [
        box[0] * size <= s.disc_centre[0] <= box[2] * size and box[1] * size <= s.disc_centre[1] <= box[3] * size
        for box, s in zip(boxes.tolist(), samples, strict=True)
    ]
    return float(np.mean(hits))


class GeneratedDiscTests(SimpleTestCase):
    def test_a_cup_is_drawn_only_when_asked_and_leaves_the_dr_images_unchanged(self):
        plain = generate_fundus(11, size=128, grade=2)
        self.assertIsNone(plain.cup_to_disc)
        self.assertFalse(plain.glaucoma)
        np.testing.assert_array_equal(plain.image, generate_fundus(11, size=128, grade=2).image)
        cupped = generate_fundus(11, size=128, grade=2, cup_to_disc=0.8)
        self.assertTrue(cupped.glaucoma)
        self.assertEqual(plain.lesions, cupped.lesions)  # the cup uses no random numbers
        changed = np.argwhere((plain.image != cupped.image).any(axis=2))
        distance = np.hypot(changed[:, 1] + 0.5 - plain.disc_centre[0], changed[:, 0] + 0.5 - plain.disc_centre[1])
        self.assertTrue(len(changed) > 0 and distance.max() <= plain.disc_radius * 0.8 + 1)
        with self.assertRaises(ValueError):
            generate_fundus(11, size=128, cup_to_disc=1.2)

    def test_glaucoma_sets_alternate_labels_and_mix_in_dr_lesions(self):
        samples = generate_glaucoma_fundus_set(12, seed=4, size=128)
        self.assertEqual([s.glaucoma for s in samples], [bool(i % 2) for i in range(12)])
        for s in samples:
            self.assertEqual(s.glaucoma, s.cup_to_disc >= GLAUCOMA_CUP_TO_DISC)
        self.assertGreater(len({s.grade for s in samples}), 1)
        again = generate_glaucoma_fundus_set(12, seed=4, size=128)
        np.testing.assert_array_equal(samples[5].image, again[5].image)


class DiscLocatorTests(SimpleTestCase):
    def test_the_crop_holds_the_optic_disc_of_generated_photographs(self):
        config = FundusGlaucomaConfig.small()
        samples = generate_glaucoma_fundus_set(40, seed=21, size=256) + generate_fundus_set(20, seed=5, size=256)
        images, _ = fundus_tensors(samples)
        boxes = locate_optic_disc(normalise_images(images), config)
        self.assertEqual(disc_hit_rate(samples, boxes, 256), 1.0)
        sides = boxes[:, 2:] - boxes[:, :2]
        self.assertTrue(torch.allclose(sides, torch.full_like(sides, config.window)))
        self.assertTrue(bool((boxes >= 0).all() and (boxes <= 1).all()))

    def test_uneven_illumination_does_not_move_the_crop_off_the_disc(self):
        # A photograph lit from below (brighter towards the bottom), as in several real ones.
        config = FundusGlaucomaConfig.small()
        samples = generate_glaucoma_fundus_set(20, seed=8, size=256)
        images, _ = fundus_tensors(samples)
        ramp = torch.linspace(0.8, 1.35, 256).view(1, 1, 256, 1)
        lit = (images.float() * ramp).clamp(0, 255).round().to(torch.uint8)
        boxes = locate_optic_disc(normalise_images(lit), config)
        self.assertEqual(disc_hit_rate(samples, boxes, 256), 1.0)


class FundusGlaucomaNetTests(SimpleTestCase):
    def setUp(self):
        use_test_threads()

    def test_shapes_and_every_trainable_parameter_gets_a_gradient(self):
        torch.manual_seed(0)
        model = FundusGlaucomaNet(FundusGlaucomaConfig.small())
        views = normalise_images(fundus_tensors(generate_glaucoma_fundus_set(4, seed=1, size=256))[0])
        output = model(views)
        self.assertEqual(tuple(output.logits.shape), (4,))
        self.assertEqual(tuple(output.boxes.shape), (4, 4))
        self.assertTrue(bool(((output.probabilities >= 0) & (output.probabilities <= 1)).all()))
        torch.nn.functional.binary_cross_entropy_with_logits(output.logits, torch.tensor([0.0, 1, 0, 1])).backward()
        self.assertEqual(trainable_parameters_without_gradient(model), [])

    def test_config_round_trip_and_bad_configs(self):
        config = FundusGlaucomaConfig.small()
        self.assertEqual(FundusGlaucomaConfig.from_dict(config.to_dict()), config)
        for bad in ({"window": 0.0}, {"disc_fraction": 0.5, "window": 0.25}, {"widths": (8,), "blocks": (1, 1)}):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                FundusGlaucomaConfig(**bad)

    def test_prediction_gives_a_probability_and_the_disc_box_in_photo_pixels(self):
        model = prepare_for_inference(FundusGlaucomaNet(FundusGlaucomaConfig.small()), torch.device("cpu"))
        sample = generate_glaucoma_fundus_set(1, seed=3, size=300)[0]
        wide = np.zeros((300, 400, 3), dtype=np.uint8)
        wide[:, 50:350] = sample.image  # a landscape photograph: the view pads it to a square
        results = predict_fundus_glaucoma(model, [wide, np.zeros((8, 8, 3), dtype=np.uint8)])
        self.assertTrue(0.0 <= results[0].glaucoma_probability <= 1.0)
        x0, y0, x1, y1 = results[0].disc_box
        self.assertTrue(x0 <= sample.disc_centre[0] + 50 <= x1 and y0 <= sample.disc_centre[1] <= y1)
        self.assertEqual(results[1].error, "InvalidInput")  # too small: fails alone

    def test_checkpoint_round_trip_rebuilds_the_same_network(self):
        torch.manual_seed(2)
        model = FundusGlaucomaNet(FundusGlaucomaConfig.small()).eval()
        loaded, _ = load_checkpoint(checkpoint_bytes(model), expected_architecture="fundus_glaucoma")
        view = square_view(generate_glaucoma_fundus_set(1, seed=9, size=256)[0].image, 256).highres[None]
        with torch.inference_mode():
            self.assertTrue(torch.allclose(model(view).logits, loaded(view).logits))


class FundusGlaucomaTrainingTests(SimpleTestCase):
    def setUp(self):
        use_test_threads()

    def test_learns_cup_size_and_is_reproducible(self):
        runs = [
            train_fundus_glaucoma_model(
                data=None,
                synthetic=120,
                seed=5,
                preset="small",
                validation_fraction=0.3,
                plan=demo_fundus_glaucoma_plan(0.5),
                description="test",
            )
            for _ in range(2)
        ]
        self.assertGreaterEqual(runs[0].metrics["auc"], 0.9, runs[0].metrics)
        self.assertEqual(runs[0].metrics, runs[1].metrics)
        for key, value in runs[0].state_dict.items():
            self.assertTrue(torch.equal(value, runs[1].state_dict[key]), key)
        self.assertTrue(runs[0].model_card["not_for_clinical_use"])
        self.assertEqual(runs[0].architecture, "fundus_glaucoma")


class TrainFundusGlaucomaCommandTests(TestCase):
    def tearDown(self):
        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def test_trains_from_a_labelled_folder_and_registers(self):
        folder = Path(tempfile.mkdtemp())
        lines = ["file,label"]
        for n, sample in enumerate(generate_glaucoma_fundus_set(16, seed=2, size=200)):
            Image.fromarray(sample.image).save(folder / f"eye{n}.png")
            lines.append(f"eye{n}.png,{int(sample.glaucoma)}")
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
        out = io.StringIO()
        call_command(
            "train_model",
            architecture="fundus_glaucoma",
            name="fg",
            model_version="1",
            folder=str(folder),
            labels=str(folder / "labels.csv"),
            epochs_scale=0.25,
            stdout=out,
        )
        self.assertIn("stage fundus-glaucoma epoch 1/", out.getvalue())
        model = ModelVersion.objects.get(name="fg")
        self.assertEqual((model.task, model.modality), ("glaucoma_fundus", "fundus"))
        self.assertEqual(model.input_spec["view_size"], 256)
        self.assertIn("16 labelled photographs", model.model_card["training_data"])
        self.assertEqual(model_load(model).__class__.__name__, "FundusGlaucomaNet")

    def test_a_grade_column_or_a_label_outside_0_1_is_refused(self):
        folder = Path(tempfile.mkdtemp())
        Image.fromarray(generate_fundus(1, size=128).image).save(folder / "a.png")
        for text, message in (("file,grade\na.png,1\n", "file,label"), ("file,label\na.png,3\n", "label must be 0-1")):
            (folder / "labels.csv").write_text(text)
            with self.subTest(text=text), self.assertRaisesMessage(CommandError, message):
                call_command(
                    "train_model",
                    architecture="fundus_glaucoma",
                    name="bad",
                    model_version="1",
                    folder=str(folder),
                    labels=str(folder / "labels.csv"),
                    stdout=io.StringIO(),
                )
        self.assertFalse(ModelVersion.objects.exists())


class FundusGlaucomaJobTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        self.fg = register_fundus_glaucoma_model()
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            case_set_status(actor=self.w.coord1, case=self.case, status="complete")

    def test_a_completed_case_gets_a_fundus_glaucoma_job_with_probability_disc_box_and_overlay(self):
        jobs = InferenceJob.objects.filter(case=self.case)
        self.assertEqual({j.model_version.name for j in jobs}, {"dr-test", "vf-test", "fundus-glaucoma-test"})
        job = jobs.get(model_version=self.fg)
        self.assertEqual(inference_run(job_pk=str(job.pk), task_id="t")["succeeded"], 1)
        prediction = Prediction.objects.get(job=job)
        self.assertTrue(0.0 <= prediction.glaucoma_probability <= 1.0)
        self.assertIsNone(prediction.grade)
        self.assertEqual(len(prediction.crop_boxes), 1)
        x0, y0, x1, y1 = prediction.crop_boxes[0]
        self.assertTrue(0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300)
        with default_storage.open(prediction.attention_overlay.name, "rb") as handle:
            self.assertEqual(Image.open(io.BytesIO(handle.read())).format, "PNG")

    def test_case_page_shows_the_fundus_result_and_fuses_both_modalities(self):
        for job in InferenceJob.objects.filter(case=self.case):
            inference_run(job_pk=str(job.pk), task_id="t")
        self.client.force_login(self.w.manager)
        page = self.client.get(reverse("trials:case-detail", args=[self.case.pk]))
        self.assertContains(page, 'data-testid="fundus-glaucoma-probability"')
        self.assertContains(page, "Optic-disc region over the photograph")
        fused = page.context["fused_glaucoma"]
        self.assertEqual(fused["used"], ["fundus", "visual_field"])
        fundus = Prediction.objects.get(model_version=self.fg).glaucoma_probability
        vf = Prediction.objects.get(model_version=self.vf).glaucoma_probability
        expected = fuse_glaucoma(GlaucomaEvidence(fundus_probability=fundus, vf_probability=vf, vf_reliable=True))
        # No calibration fitted for this trial: each modality's evidence, no combined number.
        self.assertIsNone(fused["probability"])
        self.assertContains(page, "(uncalibrated)")
        self.assertEqual({c["modality"]: c["log_odds"] for c in fused["components"]}, expected.contributions)

    def test_an_unreliable_field_leaves_the_fundus_evidence_and_says_why(self):
        from tests.support.uploads import vf_csv
        from trials.file_services import case_file_upload
        from trials.services import case_create

        case = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=40)
        case_file_upload(actor=self.w.coord1, case=case, data=generated_photo_png())
        case_file_upload(actor=self.w.coord1, case=case, data=vf_csv("OS", fp=40))
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            case_set_status(actor=self.w.coord1, case=case, status="complete")
        for job in InferenceJob.objects.filter(case=case):
            inference_run(job_pk=str(job.pk), task_id="t")
        self.client.force_login(self.w.coord1)
        page = self.client.get(reverse("trials:case-detail", args=[case.pk]))
        fused = page.context["fused_glaucoma"]
        self.assertEqual(fused["used"], ["fundus"])
        self.assertEqual(fused["excluded"], {"visual field": "visual field unreliable"})
        fundus = Prediction.objects.get(case=case, model_version=self.fg).glaucoma_probability
        self.assertAlmostEqual(fused["components"][0]["log_odds"], math.log(fundus / (1 - fundus)), places=4)
        self.assertContains(page, "visual field left out: visual field unreliable")


def generated_photo_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(generate_glaucoma_fundus_set(2, seed=6, size=320)[1].image).save(buffer, format="PNG")
    return buffer.getvalue()


class TrainFundusGlaucomaFromTrialTests(TestCase):
    def tearDown(self):
        from tests.support.storage import delete_stored_models_and_case_files

        delete_stored_models_and_case_files()

    def test_the_trials_glaucoma_reference_drives_training(self):
        from tests.support.factories import TrialWorld
        from trials.file_services import case_file_upload
        from trials.services import case_create

        w = TrialWorld()
        rows = ["subject,eye,visit_day,icdr_grade,glaucoma"]
        for day, sample in enumerate(generate_glaucoma_fundus_set(8, seed=12, size=300), start=1):
            case = case_create(actor=w.coord1, subject=w.subject1, laterality="OS", visit_day=day)
            buffer = io.BytesIO()
            Image.fromarray(sample.image).save(buffer, format="PNG")
            case_file_upload(actor=w.coord1, case=case, data=buffer.getvalue())
            rows.append(f"{w.subject1.pseudonym},OS,{day},,{'yes' if sample.glaucoma else 'no'}")
        csv_path = Path(tempfile.mkdtemp()) / "reference.csv"
        csv_path.write_text("\n".join(rows) + "\n")
        call_command("import_reference", str(csv_path), trial="dr-trial", stdout=io.StringIO())
        call_command(
            "train_model",
            architecture="fundus_glaucoma",
            name="fg-trial",
            model_version="1",
            trial="dr-trial",
            epochs_scale=0.25,
            stdout=io.StringIO(),
        )
        model = ModelVersion.objects.get(name="fg-trial")
        self.assertIn("8 photographs of trial", model.model_card["training_data"])
        self.assertIn("glaucoma references", model.model_card["training_data"])
