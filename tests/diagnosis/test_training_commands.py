import io
import tempfile
from pathlib import Path

import torch
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import SimpleTestCase, TestCase

from diagnosis.models import ModelVersion
from diagnosis.registry import model_load
from diagnosis.training.runner import demo_dr_plan, train_dr
from tests.support import image_factories
from tests.support.storage import delete_stored_models_and_case_files


class TrainingReproducibilityTests(SimpleTestCase):
    def test_same_seed_gives_the_same_weights_and_metrics(self):
        runs = [
            train_dr(
                data=None,
                synthetic=40,
                seed=3,
                preset="small",
                validation_fraction=0.25,
                plan=demo_dr_plan(0.1),
                description="test",
            )
            for _ in range(2)
        ]
        self.assertEqual(runs[0].metrics, runs[1].metrics)
        for key, value in runs[0].state_dict.items():
            self.assertTrue(torch.equal(value, runs[1].state_dict[key]), key)
        self.assertIn("kappa", runs[0].metrics)
        self.assertTrue(runs[0].model_card["not_for_clinical_use"])


class TrainModelCommandTests(TestCase):
    def tearDown(self):
        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def test_trains_from_a_folder_with_labels_and_registers_with_its_card(self):
        folder = Path(tempfile.mkdtemp())
        lines = ["file,grade"]
        for n in range(12):
            name = f"img{n}.png"
            (folder / name).write_bytes(image_factories.plain_png(300 + n, 280))
            lines.append(f"{name},{n % 5}")
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
        out = io.StringIO()
        call_command(
            "train_model",
            architecture="zoom_in_net",
            name="dr-folder",
            model_version="1",
            folder=str(folder),
            labels=str(folder / "labels.csv"),
            epochs_scale=0.1,
            stdout=out,
        )
        text = out.getvalue()
        self.assertIn("stage m epoch 1/", text)
        self.assertIn("Validation: {'kappa'", text)
        model = ModelVersion.objects.get(name="dr-folder")
        self.assertIn("12 labelled photographs", model.model_card["training_data"])
        self.assertIn("kappa", model.metrics)
        self.assertEqual(model_load(model).__class__.__name__, "ZoomInNet")

    def test_trains_the_vf_net_on_the_shipped_fields(self):
        out = io.StringIO()
        call_command(
            "train_model",
            architecture="vf_glaucoma",
            name="vf",
            model_version="1",
            demo=True,
            epochs_scale=0.1,
            stdout=out,
        )
        model = ModelVersion.objects.get(name="vf")
        self.assertIn("auc", model.metrics)
        self.assertIn("split by patient", model.model_card["training_data"])

    def test_bad_sources_get_clear_errors(self):
        with self.assertRaisesMessage(CommandError, "--folder needs --labels"):
            call_command("train_model", architecture="zoom_in_net", name="x", model_version="1", folder="/tmp")
        with self.assertRaisesMessage(CommandError, "No trial"):
            call_command("train_model", architecture="zoom_in_net", name="x", model_version="1", trial="nope")
        self.assertFalse(ModelVersion.objects.exists())


class TrainFromTrialReferenceTests(TestCase):
    def tearDown(self):
        delete_stored_models_and_case_files()

    def test_imported_reference_standard_drives_training_on_a_trial(self):
        from tests.support.factories import TrialWorld
        from trials.file_services import case_file_upload
        from trials.services import case_create

        w = TrialWorld()
        rows = ["subject,eye,visit_day,icdr_grade,glaucoma"]
        for day in range(10):
            case = case_create(actor=w.coord1, subject=w.subject1, laterality="OS", visit_day=day + 1)
            case_file_upload(actor=w.coord1, case=case, data=image_factories.plain_png(400 + day, 300))
            rows.append(f"{w.subject1.pseudonym},OS,{day + 1},{day % 5},")
        rows.append(f"{w.subject1.pseudonym},OD,77,1,")  # no such case
        csv_path = Path(tempfile.mkdtemp()) / "reference.csv"
        csv_path.write_text("\n".join(rows) + "\n")
        out = io.StringIO()
        with self.assertRaises(CommandError):
            call_command("import_reference", str(csv_path), trial="dr-trial", stdout=out)
        self.assertIn("10 recorded, 1 failed", out.getvalue())
        self.assertIn("no such case in this trial", out.getvalue())
        call_command(
            "train_model",
            architecture="zoom_in_net",
            name="dr-trial-model",
            model_version="1",
            trial="dr-trial",
            epochs_scale=0.1,
            stdout=io.StringIO(),
        )
        model = ModelVersion.objects.get(name="dr-trial-model")
        self.assertIn("10 photographs of trial", model.model_card["training_data"])


class SubjectGroupedSplitTests(SimpleTestCase):
    def test_a_subjects_photographs_never_straddle_training_and_validation(self):
        from diagnosis.training import datasets
        from diagnosis.training.runner import photograph_split

        images = torch.zeros(12, 3, 32, 32, dtype=torch.uint8)
        labels = torch.tensor([n % 2 for n in range(12)])
        data = datasets.FundusSet(images, labels, [f"c{n}" for n in range(12)], [f"s{n // 3}" for n in range(12)])
        split = photograph_split(None, data, 32, 0.25, seed=1)
        train, validation = split.sizes
        self.assertEqual(train + validation, 12)
        self.assertEqual(validation % 3, 0)  # whole subjects (three photographs each) are held out
