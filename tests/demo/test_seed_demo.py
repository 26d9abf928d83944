import io

from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse

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
        self.assertEqual(trial.status, "reading")  # the demo reader study moved it on
        self.assertEqual(set(trial.sites.values_list("hospital__code", flat=True)), {"H01", "H02"})
        self.assertEqual(Subject.objects.count(), 5)
        self.assertEqual(Case.objects.count(), 8)
        self.assertEqual(CaseFile.objects.filter(modality="fundus").count(), 8)
        self.assertEqual(VisualFieldResult.objects.count(), 8)
        # Three readers and an adjudicator who reads none of the cases.
        self.assertEqual(User.objects.filter(memberships__role="reader").distinct().count(), 4)
        for email in ("manager@visus.example", "coordinator.h01@visus.example", "monitor@visus.example"):
            self.assertIn(email, out.getvalue())
        self.assertIn("visus-demo-2026", out.getvalue())
        self.assertTrue(User.objects.get(email="coordinator.h02@visus.example").check_password("visus-demo-2026"))


class SeedDemoReaderStudyTests(TestCase):
    """seed_demo runs a small fully crossed two-phase reader study through the reading services."""

    def setUp(self):
        self.before = stored_names()

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

    def test_three_readers_in_two_groups_read_every_case_unaided_then_aided_with_a_realistic_answer(self):
        from platform_core.audit.models import AuditEvent
        from reading.models import Adjudication, CalibrationCase, Read, ReaderAssignment, ReadingSetup
        from trials.models import ReferenceStandard

        out = io.StringIO()
        call_command("seed_demo", skip_models=True, stdout=out)
        self.assertIn("Ran the demo reader study", out.getvalue())
        trial = Trial.objects.get(slug="demo-dr")
        setup = ReadingSetup.objects.get(trial=trial)
        self.assertEqual((setup.crossing, setup.aided_phase, setup.washout_days), ("fully_crossed", True, 28))
        groups = dict(ReaderAssignment.objects.filter(trial=trial).values_list("reader__email", "group"))
        self.assertEqual(
            groups,
            {
                "reader1@visus.example": "resident",
                "reader2@visus.example": "resident",
                "reader3@visus.example": "specialist",
            },
        )
        complete = Case.objects.filter(subject__trial=trial, status="complete").count()
        self.assertEqual(complete, 7)
        reads = Read.objects.filter(case__subject__trial=trial)
        self.assertEqual(reads.filter(status="signed").count(), 3 * 2 * complete)  # fully crossed, two phases
        self.assertFalse(reads.filter(status="draft").exists())
        for aided in reads.filter(phase="aided").select_related("unaided_read"):
            # Linked to the reader's unaided read, and dated after the washout.
            self.assertGreaterEqual((aided.signed_at - aided.unaided_read.signed_at).days, 28)
        backdated = AuditEvent.objects.filter(action="demo.reads_backdate")
        self.assertEqual(backdated.count(), 3 * complete)
        self.assertIn("demo timeline", backdated.first().reason)
        # One calibration case; every other case has a reference: the readers' majority, ties adjudicated.
        calibration = CalibrationCase.objects.get(case__subject__trial=trial)
        references = ReferenceStandard.objects.filter(case__subject__trial=trial)
        self.assertEqual(references.count(), complete - 1)
        self.assertFalse(references.filter(case=calibration.case).exists())
        self.assertTrue(references.filter(source="majority").exists())
        adjudicated = Adjudication.objects.filter(trial=trial)
        self.assertTrue(adjudicated.exists())
        self.assertFalse(adjudicated.exclude(status="signed").exists())
        self.assertEqual(references.filter(source="adjudication").count(), adjudicated.count())
        # A realistic answer: readers better than chance on referable DR, and better still with the AI.
        self.assertGreater(self.auc(trial, "unaided"), 0.6)
        self.assertGreater(self.auc(trial, "aided"), self.auc(trial, "unaided"))
        self.assertLess(self.auc(trial, "unaided"), 1.0)
        # The dashboard shows the study: every reader in both phases on referable DR, and the MRMC comparison.
        from evaluation.analysis import trial_analysis

        analysis = trial_analysis(trial)
        referable = next(q for q in analysis["questions"] if q["key"] == "referable_dr")
        self.assertEqual(
            sorted((r["phase"], r["reads"]) for r in referable["readers"]),
            [("aided", complete - 1)] * 3 + [("unaided", complete - 1)] * 3,
        )
        self.assertTrue(all(r["auc"] is not None for r in referable["readers"]), referable["readers"])
        self.assertIn("mrmc", referable)
        manager = User.objects.get(email="manager@visus.example")
        self.client.force_login(manager)
        page = self.client.get(reverse("evaluation:dashboard", args=[trial.slug]))
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, "R03")  # readers are shown by their study labels
        # Idempotent: a second run changes nothing.
        signed = reads.count()
        call_command("seed_demo", skip_models=True, stdout=io.StringIO())
        self.assertEqual(Read.objects.filter(case__subject__trial=trial).count(), signed)

    @staticmethod
    def auc(trial, phase):
        """AUC of the readers' referable-DR ratings (the exports' 0-100 rating) against the reference standard."""
        from reading.selectors import analysable_reads

        pairs = []
        for read in analysable_reads(trial).filter(phase=phase).select_related("case__reference"):
            confidence = read.confidences["referable_dr"]
            rating = 50 + confidence / 2 if read.answers["referable_dr"] == "yes" else 50 - confidence / 2
            pairs.append((rating, read.case.reference.icdr_grade >= 2))
        positives = [r for r, truth in pairs if truth]
        negatives = [r for r, truth in pairs if not truth]
        wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
        return wins / (len(positives) * len(negatives))


class SeedDemoModelsTests(TestCase):
    """The demo networks make run trains: all three registered, active, marked not for clinical use, once."""

    def tearDown(self):
        from diagnosis.models import ModelVersion

        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def test_trains_and_registers_each_demo_network_once_cross_validated_here(self):
        from demo.seeding import seed_models
        from diagnosis.models import ModelVersion

        out = io.StringIO()
        seed_models(stdout=out, epochs_scale=0.05, synthetic=40, folds=2, cross_validate_here=True)
        models = {m.name: m for m in ModelVersion.objects.all()}
        self.assertEqual(set(models), {"dr-demo", "vf-glaucoma-demo", "fundus-glaucoma-demo"})
        self.assertEqual({m.task for m in models.values()}, {"dr_grading", "glaucoma_vf", "glaucoma_fundus"})
        for model in models.values():
            self.assertEqual(model.status, "active")
            self.assertTrue(model.not_for_clinical_use)
            self.assertIn("auc", str(model.metrics))
            # Cross-validated over all the shipped real data by subject, with the counts, on every demo card.
            self.assertEqual(model.model_card["cross_validation"]["status"], "done")
            crossval = model.model_card["metrics_real_cross_validated"]
            self.assertEqual(crossval["folds"], 2.0)
            self.assertGreater(crossval["n"], model.model_card["metrics"]["n"])  # all of it, not the held-out part
            self.assertGreaterEqual(crossval["subjects"], 2.0)
            self.assertIn("auc", crossval)
        seed_models(stdout=out, epochs_scale=0.05, synthetic=40)
        self.assertEqual(ModelVersion.objects.count(), 3)
