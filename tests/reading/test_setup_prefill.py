"""The reading-design form starts from the trial's protocol (its reading design, washout and readers per case)
until a set-up is saved; after that it shows the saved set-up."""

from __future__ import annotations

from django.test import TestCase

from reading import services
from tests.support.factories import TrialWorld
from trials.models import Trial


class SetupPrefillTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.url = f"/reading/trials/{self.w.trial.slug}/manage/"
        self.client.force_login(self.w.manager)

    def form(self):
        page = self.client.get(self.url)
        self.assertEqual(page.status_code, 200)
        return page, page.context["setup_form"]

    def test_an_aided_protocol_prefills_the_aided_phase_its_washout_and_readers_per_case(self):
        Trial.objects.filter(pk=self.w.trial.pk).update(
            reading_design="unaided_then_aided", washout_days=42, readers_per_case=2
        )
        page, form = self.form()
        self.assertEqual(
            (form["aided_phase"].value(), form["washout_days"].value(), form["readers_per_case"].value()),
            (True, 42, 2),
        )
        self.assertContains(page, 'name="washout_days" value="42"')
        self.assertContains(page, "Filled in from the trial's protocol")

    def test_an_unaided_protocol_leaves_the_aided_phase_off(self):
        Trial.objects.filter(pk=self.w.trial.pk).update(reading_design="unaided", washout_days=0, readers_per_case=1)
        _, form = self.form()
        self.assertEqual(
            (form["aided_phase"].value(), form["washout_days"].value(), form["readers_per_case"].value()),
            (False, 28, 1),
        )

    def test_a_saved_set_up_wins_over_the_protocol(self):
        Trial.objects.filter(pk=self.w.trial.pk).update(reading_design="unaided_then_aided", washout_days=42)
        self.w.trial.refresh_from_db()
        services.reading_setup_set(
            actor=self.w.manager, trial=self.w.trial, crossing="k_per_case", readers_per_case=2, aided_phase=False
        )
        page, form = self.form()
        self.assertEqual((form["crossing"].value(), form["aided_phase"].value()), ("k_per_case", False))
        self.assertNotContains(page, "Filled in from the trial's protocol")
