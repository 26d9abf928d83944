"""`train_model --demo` trains on the demo app's shipped data through recipes the demo app registers."""

from __future__ import annotations

import io
from unittest import mock

from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase

from demo import training
from diagnosis.models import ModelVersion
from diagnosis.training import recipes


class DemoRecipeTests(TestCase):
    def test_the_demo_app_registers_a_recipe_per_architecture(self):
        self.assertEqual(
            recipes._demo_recipes,
            {
                "zoom_in_net": training.train_demo_dr,
                "fundus_glaucoma": training.train_demo_fundus_glaucoma,
                "vf_glaucoma": training.train_demo_vf,
            },
        )

    def test_the_shipped_demo_data_is_found_where_the_demo_app_keeps_it(self):
        self.assertTrue((training.DEMO_DATA / "hrf" / "labels.csv").is_file())
        self.assertEqual(len(training.hrf_demo_set(64)), 20)
        self.assertGreater(len(training.demo_visual_fields()), 20)

    def test_without_the_demo_app_train_model_refuses_demo_with_a_clear_message(self):
        for architecture in ("zoom_in_net", "vf_glaucoma", "fundus_glaucoma"):
            with (
                self.subTest(architecture=architecture),
                mock.patch.object(recipes, "_demo_recipes", {}),
                self.assertRaisesMessage(CommandError, f"no demo recipe for {architecture}: the demo app"),
            ):
                call_command(
                    "train_model",
                    architecture=architecture,
                    name="x",
                    model_version="1",
                    demo=True,
                    stdout=io.StringIO(),
                )
        self.assertFalse(ModelVersion.objects.exists())
