"""The trial page shows what the trial's modalities need: visual-field reliability cut-offs only when it collects
visual fields, the glaucoma fusion block only when it collects more than one modality to fuse."""

from __future__ import annotations

from django.test import TestCase
from django.urls import reverse

from tests.support.factories import TrialWorld


class TrialPageModalityTests(TestCase):
    def page(self, modalities: tuple[str, ...]):
        w = TrialWorld(modalities=modalities)
        self.client.force_login(w.manager)
        return self.client.get(reverse("trials:trial-detail", args=[w.trial.slug]))

    def test_a_fundus_only_trial_shows_neither_visual_field_cut_offs_nor_the_fusion_block(self):
        page = self.page(("fundus",))
        self.assertContains(page, 'data-testid="protocol-modalities">Fundus photograph<')
        self.assertNotContains(page, "Visual field reliability")
        self.assertNotContains(page, "fixation losses")
        self.assertNotContains(page, 'data-testid="fusion-calibration"')

    def test_a_fundus_and_visual_field_trial_shows_both(self):
        page = self.page(("fundus", "visual_field"))
        self.assertContains(page, "Visual field reliability")
        self.assertContains(page, "reliable when fixation losses &lt; ")
        self.assertContains(page, 'data-testid="fusion-calibration"')

    def test_a_visual_field_only_trial_shows_the_cut_offs_without_a_fusion(self):
        page = self.page(("visual_field",))
        self.assertContains(page, "Visual field reliability")
        self.assertNotContains(page, 'data-testid="fusion-calibration"')
