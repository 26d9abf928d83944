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


class TrialFieldsCarryTheirRatesTests(UploadTestCase):
    modalities = ("visual_field",)

    def test_a_trial_field_is_judged_for_training_by_its_stored_rates(self):
        from diagnosis.management.commands.train_model import trial_visual_fields

        self.upload(vf_csv(fl=1, checks=14, fp=12, fn=2), "vf.csv")
        reference_standard_record(actor=None, case=self.w.case1, source="imported", glaucoma="yes")
        ((field, label, _),) = trial_visual_fields(self.w.trial)
        self.assertEqual(label, 1)
        self.assertAlmostEqual(field.fixation_loss_percent, 100 / 14, places=2)
        self.assertEqual(field.false_positive_percent, 12)
        kept, excluded = reliable_training_fields([(field, label, "s")])
        self.assertEqual((len(kept), excluded), (1, 0))
