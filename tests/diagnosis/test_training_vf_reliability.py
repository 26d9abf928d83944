"""The VF net is trained on the fields the platform would score: reliable ones only (Li et al. 2018)."""

from __future__ import annotations

from django.test import SimpleTestCase

from demo.training import demo_visual_fields
from diagnosis.training.runner import reliable_training_fields
from tests.support.uploads import UploadTestCase, vf_csv
from trials.services import reference_standard_record
from trials.uploads.visual_field import reliability


class ReliableTrainingFieldsTests(SimpleTestCase):
    def test_unreliable_demo_fields_are_left_out_and_counted(self):
        fields = demo_visual_fields()
        kept, excluded = reliable_training_fields(fields)
        self.assertEqual(len(kept) + excluded, len(fields))
        self.assertGreater(excluded, 0)  # 67 of the 623 shipped fields fail Li et al.'s cut-offs
        self.assertTrue(all(reliability(vf).reliable for vf, _, _ in kept))
        dropped = [vf for vf, _, _ in fields if not reliability(vf).reliable]
        self.assertEqual(len(dropped), excluded)


class TrialFieldsAreJudgedByTheirStoredVerdictTests(UploadTestCase):
    """`train_model --trial` reads what the workers read: the stored plot and indices of fields the pipeline
    judged reliable under the trial's cut-offs (re-judged when they change), so an unreliable one is left out."""

    modalities = ("visual_field",)

    def trial_set(self):
        from diagnosis.management.commands.train_model import trial_visual_fields

        return trial_visual_fields(self.w.trial, 64)

    def test_a_reliable_field_is_trained_on_with_its_label(self):
        self.upload(vf_csv(fl=1, checks=14, fp=12, fn=2), "vf.csv")  # FL 1/14 < 2/13, FP 12% < 15%
        reference_standard_record(actor=None, case=self.w.case1, source="imported", glaucoma="yes")
        data = self.trial_set()
        self.assertEqual(len(data), 1)
        self.assertEqual(int(data.labels[0]), 1)

    def test_a_field_unreliable_by_the_trials_cut_offs_is_left_out(self):
        from django.core.management.base import CommandError

        self.upload(vf_csv(fl=1, checks=14, fp=20, fn=2), "vf.csv")  # FP 20% >= 15%
        reference_standard_record(actor=None, case=self.w.case1, source="imported", glaucoma="yes")
        with self.assertRaisesMessage(CommandError, "no case with both a glaucoma reference and a reliable field"):
            self.trial_set()
