import io

from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import TestCase

from platform_core.accounts.models import Hospital, User
from tests.trials.test_uploads_service import stored_names
from trials.models import Case, CaseFile, Subject, Trial, VisualFieldResult


class SeedDemoTests(TestCase):
    def setUp(self):
        self.before = stored_names()

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

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
