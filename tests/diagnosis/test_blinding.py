"""One blinding rule (``trials.selectors.ai_blinded_trial_ids``), applied on every surface that shows AI outputs.

The person here coordinates at H01 and also reads for the trial: every surface hides the trial's AI outputs
from them, and shows them again once they no longer read for it.
"""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from diagnosis.models import InferenceJob, Prediction
from diagnosis.selectors import ai_visible_cases, case_inference_context, jobs_for, predictions_for
from platform_core.accounts.models import Membership, Role
from tests.support.factories import TrialWorld
from tests.support.registry import register_small_models
from trials.selectors import ai_blinded_trial_ids, user_is_blinded_to_ai


class OneBlindingRuleTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.dr, vf = register_small_models()
        for model in (self.dr, vf):
            self.addCleanup(default_storage.delete, model.weights.name)
        self.job = InferenceJob.objects.create(case=self.w.case1, model_version=self.dr, status="succeeded")
        self.prediction = Prediction.objects.create(
            job=self.job, case=self.w.case1, model_version=self.dr, runtime_ms=1.0
        )
        self.person = self.w.coord1
        self.reading = Membership.objects.create(user=self.person, hospital=self.w.h1, role=Role.READER)
        self.api = APIClient()
        self.api.force_authenticate(self.person)
        self.client.force_login(self.person)

    def surfaces(self) -> dict[str, object]:
        """What each surface shows the person of the trial's AI outputs."""
        case_page = self.client.get(reverse("trials:case-detail", args=[self.w.case1.pk]))
        predictions_api = self.api.get(reverse("api:diagnosis:case-prediction-list", args=[self.w.case1.pk]))
        jobs_api = self.api.get(reverse("api:diagnosis:case-job-list", args=[self.w.case1.pk]))
        return {
            "rule": self.w.trial.pk in {row["pk"] for row in ai_blinded_trial_ids(self.person)},
            "user_is_blinded_to_ai": user_is_blinded_to_ai(self.person, self.w.trial),
            "ai_visible_cases": ai_visible_cases(self.person).filter(pk=self.w.case1.pk).exists(),
            "jobs_for": jobs_for(self.person).exists(),
            "predictions_for": predictions_for(self.person).exists(),
            "case_inference_context": bool(case_inference_context(user=self.person, case=self.w.case1)["predictions"]),
            "case_page_blinded": case_page.context["blinded"] if "blinded" in case_page.context else False,
            "predictions_api": predictions_api.status_code,
            "jobs_api": jobs_api.status_code,
        }

    def test_a_coordinator_who_also_reads_sees_no_ai_output_anywhere(self):
        self.assertEqual(
            self.surfaces(),
            {
                "rule": True,
                "user_is_blinded_to_ai": True,
                "ai_visible_cases": False,
                "jobs_for": False,
                "predictions_for": False,
                "case_inference_context": False,
                "case_page_blinded": True,
                "predictions_api": 403,
                "jobs_api": 403,
            },
        )

    def test_once_they_no_longer_read_for_the_trial_every_surface_shows_the_outputs(self):
        self.reading.delete()
        self.assertEqual(
            self.surfaces(),
            {
                "rule": False,
                "user_is_blinded_to_ai": False,
                "ai_visible_cases": True,
                "jobs_for": True,
                "predictions_for": True,
                "case_inference_context": True,
                "case_page_blinded": False,
                "predictions_api": 200,
                "jobs_api": 200,
            },
        )
