import io

from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import TestCase

from platform_core.accounts.models import Hospital, User
from tests.support.storage import stored_names
from trials.models import Case, CaseFile, Subject, Trial, VisualFieldResult


class SeedDemoTests(TestCase):
    def setUp(self):
        self.before = stored_names()

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

    def test_refused_in_production(self):
        from django.core.management.base import CommandError

        with self.settings(PRODUCTION=True), self.assertRaisesMessage(CommandError, "refuses to run in production"):
            call_command("seed_demo", skip_models=True, stdout=io.StringIO())
        self.assertFalse(User.objects.exists())

    def test_a_cross_validation_of_one_fold_is_refused_before_anything_is_created(self):
        from django.core.management.base import CommandError

        with self.assertRaisesMessage(CommandError, "at least 2 folds, not 1"):
            call_command("seed_demo", cross_validate=1, stdout=io.StringIO())
        self.assertFalse(User.objects.exists())

    def test_seed_demo_is_idempotent_and_uploads_real_files_through_the_pipeline(self):
        out = io.StringIO()
        call_command("seed_demo", skip_models=True, stdout=out)
        call_command("seed_demo", skip_models=True, stdout=io.StringIO())
        self.assertEqual(sorted(Hospital.objects.values_list("code", flat=True)), ["H01", "H02"])
        trial = Trial.objects.get(slug="demo-dr")
        self.assertEqual(trial.status, "recruiting")
        self.assertEqual(set(trial.sites.values_list("hospital__code", flat=True)), {"H01", "H02"})
        self.assertEqual(Subject.objects.count(), 5)
        self.assertEqual(Case.objects.count(), 8)
        self.assertEqual(CaseFile.objects.filter(modality="fundus").count(), 8)
        self.assertEqual(VisualFieldResult.objects.count(), 8)
        self.assertEqual(User.objects.filter(memberships__role="reader").distinct().count(), 3)
        for email in ("manager@visus.example", "coordinator.h01@visus.example", "monitor@visus.example"):
            self.assertIn(email, out.getvalue())
        self.assertIn("visus-demo-2026", out.getvalue())
        self.assertTrue(User.objects.get(email="coordinator.h02@visus.example").check_password("visus-demo-2026"))


class SeedDemoModelsTests(TestCase):
    """The demo networks make run trains: all three registered, active, marked not for clinical use, once."""

    def tearDown(self):
        from diagnosis.models import ModelVersion

        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def test_trains_and_registers_each_demo_network_once(self):
        from demo.seeding import seed_models
        from diagnosis.models import ModelVersion

        out = io.StringIO()
        seed_models(stdout=out, epochs_scale=0.05, synthetic=40, folds=2)
        models = {m.name: m for m in ModelVersion.objects.all()}
        self.assertEqual(set(models), {"dr-demo", "vf-glaucoma-demo", "fundus-glaucoma-demo"})
        self.assertEqual({m.task for m in models.values()}, {"dr_grading", "glaucoma_vf", "glaucoma_fundus"})
        for model in models.values():
            self.assertEqual(model.status, "active")
            self.assertTrue(model.not_for_clinical_use)
            self.assertIn("auc", str(model.metrics))
            # Cross-validated over all the shipped real data by subject, with the counts, on every demo card.
            crossval = model.model_card["metrics_real_cross_validated"]
            self.assertEqual(crossval["folds"], 2.0)
            self.assertGreater(crossval["n"], model.model_card["metrics"]["n"])  # all of it, not the held-out part
            self.assertGreaterEqual(crossval["subjects"], 2.0)
            self.assertIn("auc", crossval)
        seed_models(stdout=out, epochs_scale=0.05, synthetic=40)
        self.assertEqual(ModelVersion.objects.count(), 3)
