"""The VF net is trained on the fields the platform would score: reliable ones only (Li et al. 2018)."""

from __future__ import annotations

from django.test import SimpleTestCase

from diagnosis.training.runner import demo_visual_fields, reliable_training_fields
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
