"""One description per architecture: the specs (networks) and recipes (training) are the only lists."""

import io
from pathlib import Path

import numpy as np
from django.conf import settings
from django.test import SimpleTestCase
from PIL import Image

from diagnosis.models import Architecture, ModelVersion, Task
from diagnosis.networks.checkpoints import architecture_of, build_network, load_checkpoint, save_checkpoint
from diagnosis.networks.inference import FundusGlaucomaPrediction, FundusPrediction, VisualFieldPrediction
from diagnosis.networks.specs import NETWORKS, ResultContext, network_spec, spec_of
from diagnosis.training.recipes import RECIPES, training_recipe


class NetworkSpecRegistryTests(SimpleTestCase):
    def test_every_architecture_builds_and_round_trips_through_a_checkpoint(self):
        for name, spec in NETWORKS.items():
            with self.subTest(name):
                network = build_network(name, spec.config_class.preset("small").to_dict())
                self.assertIsInstance(network, spec.network_class)
                self.assertIs(spec_of(network), spec)
                self.assertEqual(architecture_of(network), name)
                buffer = io.BytesIO()
                save_checkpoint(network, buffer)
                restored, _ = load_checkpoint(buffer.getvalue(), expected_architecture=name)
                self.assertEqual(spec.config_of(restored), spec.config_of(network))

    def test_model_choices_are_the_specs(self):
        self.assertEqual(Architecture.values, list(NETWORKS))
        self.assertEqual(Task.values, [spec.task for spec in NETWORKS.values()])
        self.assertEqual(len(set(Task.values)), len(NETWORKS), "one task per architecture")

    def test_a_model_version_reads_its_spec_for_modality(self):
        for name, spec in NETWORKS.items():
            model = ModelVersion(architecture=name, task=spec.task)
            self.assertIs(model.spec, spec)
            self.assertEqual(model.modality, spec.modality)
            self.assertEqual(spec.describe_input({})["modality"], spec.modality)

    def test_every_architecture_has_one_training_recipe_and_a_result_template(self):
        self.assertEqual(list(RECIPES), list(NETWORKS))
        for name, recipe in RECIPES.items():
            self.assertIs(recipe.spec, NETWORKS[name])
            self.assertIs(training_recipe(name), recipe)
        templates = Path(settings.BASE_DIR) / "templates"
        for spec in NETWORKS.values():
            self.assertTrue((templates / spec.result_template).is_file(), spec.result_template)

    def test_unknown_names_are_refused_with_the_known_ones(self):
        with self.assertRaisesMessage(ValueError, "unknown architecture 'resnet'; known: zoom_in_net"):
            network_spec("resnet")
        with self.assertRaisesMessage(ValueError, "no training recipe for 'resnet'"):
            training_recipe("resnet")

    def test_records_hold_the_prediction_fields_and_an_overlay_where_the_network_located_something(self):
        preview = Image.new("RGB", (64, 48))
        context = ResultContext(runtime_ms=12.5, device="cpu", image_size=(128, 96), preview=preview)
        dr = NETWORKS["zoom_in_net"].record(
            FundusPrediction((0.1, 0.2, 0.3, 0.2, 0.2), 0.7, np.zeros((48, 64), np.float32), ((1, 2, 30, 40),)),
            context,
        )
        self.assertEqual(dr.fields["grade"], 2)
        self.assertEqual(dr.fields["crop_boxes"], [[1, 2, 30, 40]])
        self.assertEqual(dr.fields["details"], {"image_size": [128, 96], "device": "cpu"})
        self.assertTrue(dr.overlay and dr.overlay.startswith(b"\x89PNG"))
        disc = NETWORKS["fundus_glaucoma"].record(FundusGlaucomaPrediction(0.4, (5, 6, 50, 60)), context)
        self.assertEqual(disc.fields["glaucoma_probability"], 0.4)
        self.assertEqual(disc.fields["crop_boxes"], [[5, 6, 50, 60]])
        self.assertTrue(disc.overlay and disc.overlay.startswith(b"\x89PNG"))
        vf = NETWORKS["vf_glaucoma"].record(VisualFieldPrediction(0.9), ResultContext(runtime_ms=3.0, device="cpu"))
        self.assertEqual(vf.fields, {"glaucoma_probability": 0.9, "runtime_ms": 3.0, "details": {"device": "cpu"}})
        self.assertIsNone(vf.overlay)


class EyeTests(SimpleTestCase):
    def test_only_od_and_os_are_eyes(self):
        from diagnosis.training.datasets import as_eye

        self.assertEqual((as_eye("OD"), as_eye("OS")), ("OD", "OS"))
        with self.assertRaisesMessage(ValueError, "eye must be OD or OS, not 'R'"):
            as_eye("R")
