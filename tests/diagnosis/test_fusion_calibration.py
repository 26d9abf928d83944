"""Fitting a trial's glaucoma fusion on its reference standard, and the case page before and after."""

from __future__ import annotations

import io
import math

import numpy as np
from django.core.management import CommandError, call_command
from django.test import TestCase
from django.urls import reverse

from diagnosis.calibration import fusion_calibration_fit
from diagnosis.models import FusionCalibration, InferenceJob, JobStatus, Prediction
from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from tests.support.factories import TrialWorld, enrol
from tests.support.registry import register_fundus_glaucoma_model
from trials.services import case_create, reference_standard_record

# Fundus network outputs of the labelled eyes: overconfident (glaucomatous ~0.9-0.99, healthy ~0.4-0.8).
GLAUCOMATOUS = [0.99, 0.97, 0.9, 0.95, 0.6]
HEALTHY = [0.8, 0.4, 0.55, 0.7, 0.45, 0.92, 0.5, 0.65]


def predict(case, model, probability: float) -> Prediction:
    job = InferenceJob.objects.create(
        case=case, model_version=model, input_digest=f"d{case.pk}", status=JobStatus.SUCCEEDED
    )
    return Prediction.objects.create(
        job=job, case=case, model_version=model, glaucoma_probability=probability, runtime_ms=1
    )


class FusionCalibrationTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()
        cls.model = register_fundus_glaucoma_model()
        cls.cases = []
        for index, (probability, answer) in enumerate(
            [(p, "yes") for p in GLAUCOMATOUS] + [(p, "no") for p in HEALTHY]
        ):
            subject = enrol(coordinator=cls.w.coord1, trial=cls.w.trial, hospital=cls.w.h1)
            case = case_create(actor=cls.w.coord1, subject=subject, laterality="OD", visit_day=index)
            predict(case, cls.model, probability)
            reference_standard_record(actor=cls.w.manager, case=case, source="imported", glaucoma=answer)
            cls.cases.append(case)
        cls.unlabelled = cls.w.case1  # no reference standard: its page uses the fit
        predict(cls.unlabelled, cls.model, 0.97)

    def page(self, user=None):
        self.client.force_login(user or self.w.manager)
        return self.client.get(reverse("trials:case-detail", args=[self.unlabelled.pk]))

    def test_before_fitting_the_page_says_uncalibrated_and_shows_the_components_not_one_number(self):
        page = self.page()
        fused = page.context["fused_glaucoma"]
        self.assertFalse(fused["calibrated"])
        self.assertIsNone(fused["probability"])
        self.assertContains(page, 'data-testid="fusion-uncalibrated"')
        self.assertContains(page, "(uncalibrated)")
        self.assertNotContains(page, 'data-testid="fused-probability"')
        self.assertContains(page, 'data-testid="fusion-components"')
        self.assertEqual([c["modality"] for c in fused["components"]], ["fundus"])
        self.assertAlmostEqual(fused["components"][0]["log_odds"], math.log(0.97 / 0.03))

    def test_fitting_stores_platt_scaled_weights_audited_and_the_page_shows_prior_and_contributions(self):
        calibration = fusion_calibration_fit(actor=self.w.manager, trial=self.w.trial)
        self.assertEqual((calibration.eyes, calibration.positives), (13, 5))
        self.assertEqual(calibration.fundus_model, self.model)
        self.assertIsNone(calibration.vf_model)
        self.assertIn("fundus", calibration.weights["platt"])
        event = AuditEvent.objects.get(action="fusion.calibrate")
        self.assertEqual(event.object_id, str(calibration.pk))
        self.assertEqual(event.trial_ref, self.w.trial.slug)
        self.assertEqual(event.changes["eyes"], [None, 13])

        page = self.page()
        fused = page.context["fused_glaucoma"]
        self.assertTrue(fused["calibrated"])
        # The overconfident 0.97 means less in this trial, where healthy eyes also score high.
        self.assertLess(fused["probability"], 0.9)
        self.assertGreater(fused["probability"], fused["prior_probability"])
        self.assertAlmostEqual(
            math.log(fused["probability"] / (1 - fused["probability"])),
            math.log(fused["prior_probability"] / (1 - fused["prior_probability"]))
            + fused["components"][0]["log_odds"],
        )
        self.assertContains(page, 'data-testid="fused-probability"')
        self.assertContains(page, "13 eyes, 5 glaucomatous (prevalence 38%)")
        self.assertNotContains(page, 'data-testid="fusion-uncalibrated"')

    def test_a_calibration_of_another_model_version_is_not_used(self):
        fusion_calibration_fit(actor=self.w.manager, trial=self.w.trial)
        other = register_fundus_glaucoma_model(version="2")
        Prediction.objects.filter(case=self.unlabelled).delete()
        InferenceJob.objects.filter(case=self.unlabelled).delete()
        predict(self.unlabelled, other, 0.97)
        self.assertFalse(self.page().context["fused_glaucoma"]["calibrated"])

    def test_too_few_labelled_eyes_are_refused_with_the_counts_and_nothing_is_stored(self):
        for case in self.cases[2:]:
            case.reference.delete()
        with self.assertRaisesMessage(ApplicationError, "fundus: 2 eyes, 2 glaucomatous"):
            fusion_calibration_fit(actor=self.w.manager, trial=self.w.trial)
        self.assertFalse(FusionCalibration.objects.exists())
        self.assertFalse(AuditEvent.objects.filter(action="fusion.calibrate").exists())

    def test_a_model_of_another_task_is_refused(self):
        with self.assertRaisesMessage(ApplicationError, "is not a visual-field glaucoma model"):
            fusion_calibration_fit(actor=self.w.manager, trial=self.w.trial, vf_model=self.model)

    def test_a_coordinator_who_also_reads_sees_no_fused_evidence(self):
        from platform_core.accounts.models import Membership, Role

        fusion_calibration_fit(actor=self.w.manager, trial=self.w.trial)
        Membership.objects.create(user=self.w.coord1, hospital=self.w.h1, role=Role.READER)
        page = self.page(self.w.coord1)
        self.assertContains(page, 'data-testid="blinded"')
        self.assertNotContains(page, 'data-testid="fused-glaucoma"')
        self.assertNotContains(page, "Prior ")

    def test_the_command_fits_and_prints_the_calibration(self):
        out = io.StringIO()
        call_command("fit_fusion", "--trial", self.w.trial.slug, "--user", self.w.manager.email, stdout=out)
        self.assertIn("Fitted on 13 eyes (5 glaucomatous)", out.getvalue())
        self.assertIn("fundus: 13 eyes, 5 glaucomatous; Platt slope", out.getvalue())
        self.assertEqual(FusionCalibration.objects.get().fitted_by, self.w.manager)
        with self.assertRaisesMessage(CommandError, "No trial 'nope'"):
            call_command("fit_fusion", "--trial", "nope")
        with self.assertRaisesMessage(CommandError, "No model version 'x:1'"):
            call_command("fit_fusion", "--trial", self.w.trial.slug, "--fundus-model", "x:1")

    def test_the_fit_uses_the_reference_standard_not_the_outputs_alone(self):
        fitted = fusion_calibration_fit(actor=None, trial=self.w.trial)
        for case in self.cases:  # the same outputs with the labels flipped: evidence points the other way
            answer = "no" if case.reference.glaucoma == "yes" else "yes"
            reference_standard_record(actor=None, case=case, source="imported", glaucoma=answer, reason="flip")
        flipped = fusion_calibration_fit(actor=None, trial=self.w.trial)
        self.assertGreater(fitted.weights["platt"]["fundus"][0], 0)
        self.assertLess(flipped.weights["platt"]["fundus"][0], 0)
        self.assertTrue(np.isfinite(flipped.weights["prior_probability"]))


class FusionCalibrationPageTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld(modalities=("fundus", "visual_field"))
        cls.model = register_fundus_glaucoma_model()
        for index, (probability, answer) in enumerate(
            [(p, "yes") for p in GLAUCOMATOUS] + [(p, "no") for p in HEALTHY]
        ):
            subject = enrol(coordinator=cls.w.coord1, trial=cls.w.trial, hospital=cls.w.h1)
            case = case_create(actor=cls.w.coord1, subject=subject, laterality="OD", visit_day=index)
            predict(case, cls.model, probability)
            reference_standard_record(actor=cls.w.manager, case=case, source="imported", glaucoma=answer)
        cls.url = reverse("diagnosis:fusion-calibrate", args=[cls.w.trial.slug])
        cls.trial_page = reverse("trials:trial-detail", args=[cls.w.trial.slug])

    def test_a_manager_fits_it_from_the_trial_page_and_sees_the_result(self):
        self.client.force_login(self.w.manager)
        self.assertContains(self.client.get(self.trial_page), "Not fitted: case pages show")
        page = self.client.post(self.url, follow=True)
        self.assertRedirects(page, self.trial_page)
        self.assertContains(page, "Fusion calibrated on 13 eyes (5 glaucomatous)")
        self.assertContains(page, 'data-testid="fusion-calibration-latest"')
        # Probabilities in whole percent as on the case page, weights with two decimals, for the trial's modalities.
        calibration = FusionCalibration.objects.get()
        prior = round(calibration.weights["prior_probability"] * 100)
        self.assertContains(page, f"13 eyes, 5 glaucomatous (prevalence 38%), prior {prior}%;")
        self.assertContains(
            page,
            f"Weights: fundus photograph {calibration.weights['fundus_weight']:.2f}, "
            f"visual field {calibration.weights['vf_weight']:.2f}.",
        )
        self.assertNotContains(page, "RNFL thickness (OCT)")
        calibration = FusionCalibration.objects.get()
        self.assertEqual(calibration.fitted_by, self.w.manager)
        self.assertEqual(AuditEvent.objects.get(action="fusion.calibrate").actor, self.w.manager)

    def test_a_single_modality_trial_shows_no_fusion_block(self):
        from trials.models import Trial

        Trial.objects.filter(pk=self.w.trial.pk).update(modalities=["fundus"])
        self.client.force_login(self.w.manager)
        page = self.client.get(self.trial_page)
        self.assertNotContains(page, 'data-testid="fusion-calibration"')
        self.assertNotContains(page, "Glaucoma fusion calibration")

    def test_a_refusal_is_shown_and_stores_nothing(self):
        from trials.models import ReferenceStandard

        ReferenceStandard.objects.filter(glaucoma="no").delete()
        self.client.force_login(self.w.manager)
        page = self.client.post(self.url, follow=True)
        self.assertContains(page, "Cannot calibrate the fusion of trial")
        self.assertFalse(FusionCalibration.objects.exists())

    def test_other_roles_cannot_fit_it_or_see_the_form(self):
        for user in (self.w.coord1, self.w.monitor, self.w.statistician, self.w.reader, self.w.outsider):
            with self.subTest(user=user.email):
                self.client.force_login(user)
                self.assertIn(self.client.post(self.url).status_code, (403, 404))
                page = self.client.get(self.trial_page)
                self.assertNotContains(page, 'data-testid="fusion-calibration"', status_code=page.status_code)
        self.assertFalse(FusionCalibration.objects.exists())
        self.client.force_login(self.w.manager)
        self.assertEqual(self.client.get(self.url).status_code, 405)
