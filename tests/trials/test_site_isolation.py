"""Site isolation: a coordinator at hospital A gets nothing of hospital B, at every URL and endpoint."""

from __future__ import annotations

from django.test import TestCase
from django.urls import get_resolver
from rest_framework.test import APIClient

from platform_core.audit.models import AuditEvent
from tests.support.factories import TrialWorld
from tests.support.storage import stored_names
from tests.support.urls import fill, walk
from trials.models import Case, Subject, TrialSite


class SiteIsolationWalkTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        site_b = TrialSite.objects.get(trial=self.w.trial, hospital=self.w.h2)
        # Site B also has a file, an inference job and a prediction with an attention map.
        from diagnosis.models import InferenceJob, Prediction
        from tests.support import image_factories
        from tests.support.registry import register_small_models
        from trials.file_services import case_file_upload

        self.before = stored_names("cases") | stored_names("models")
        self.file_b = case_file_upload(
            actor=self.w.coord2, case=self.w.case2, data=image_factories.plain_png(400, 400)
        ).case_file
        dr_model, _ = register_small_models()
        job = InferenceJob.objects.create(case=self.w.case2, model_version=dr_model, status="succeeded")
        self.prediction_b = Prediction.objects.create(
            job=job,
            case=self.w.case2,
            model_version=dr_model,
            runtime_ms=1.0,
            attention_overlay=self.file_b.thumbnail.name,
            class_probabilities=[0.2] * 5,
        )
        b_ids = [
            str(self.w.subject2.pk),
            str(self.w.case2.pk),
            str(site_b.pk),
            str(self.file_b.pk),
            str(self.prediction_b.pk),
        ]
        self.secrets = [self.w.subject2.pseudonym, *b_ids, self.file_b.sha256]
        self.values = {
            "slug": [self.w.trial.slug],
            "pseudonym": [self.w.subject2.pseudonym],
            "pk": b_ids,
            "object_id": b_ids,
            "variant": ["content", "preview", "thumbnail", "pd_plot"],
            "app_label": ["trials"],
            "*": b_ids,
        }
        self.client.force_login(self.w.coord1)
        self.api = APIClient()
        self.api.force_authenticate(self.w.coord1)

    def tearDown(self):
        from django.core.files.storage import default_storage

        for name in (stored_names("cases") | stored_names("models")) - self.before:
            default_storage.delete(name)

    def assert_no_secrets(self, path, response):
        body = response.content.decode(errors="replace")
        for secret in self.secrets:
            self.assertNotIn(secret, body.replace(path, ""), f"{path} leaked {secret}")

    def test_every_url_returns_nothing_of_the_other_site(self):
        routes = list(walk(get_resolver().url_patterns))
        self.assertGreater(len(routes), 20)
        checked = 0
        for route, _pattern in routes:
            for path in fill(route, self.values):
                if path.startswith(("/static/", "/media/")):
                    continue
                client = self.api if path.startswith("/api/") else self.client
                response = client.get(path)
                object_path = any(value in path for value in self.secrets)
                if object_path:
                    self.assertIn(response.status_code, (302, 403, 404, 405), f"GET {path} -> {response.status_code}")
                if response.status_code == 200:
                    self.assert_no_secrets(path, response)
                checked += 1
        self.assertGreater(checked, 30)

    def test_every_write_to_the_other_site_is_refused_and_changes_nothing(self):
        before = (AuditEvent.objects.count(), Subject.objects.count(), Case.objects.count())
        subject_b = Subject.objects.get(pk=self.w.subject2.pk)
        for route, _pattern in walk(get_resolver().url_patterns):
            for path in fill(route, self.values):
                if not any(value in path for value in self.secrets) or path.startswith("/admin/"):
                    continue
                client = self.api if path.startswith("/api/") else self.client
                body = {"reason": "x", "status": "complete", "laterality": "OS", "visit_day": 3, "thickness_um": 80}
                body["action"] = "withdraw"  # the file retire form (trials:case-file-retire)
                response = client.post(path, body, format="json") if client is self.api else client.post(path, body)
                self.assertIn(response.status_code, (403, 404, 405), f"POST {path} -> {response.status_code}")
        self.assertEqual(before, (AuditEvent.objects.count(), Subject.objects.count(), Case.objects.count()))
        subject_b.refresh_from_db()
        self.assertEqual(subject_b.status, "enrolled")

    def test_api_lists_hold_only_own_site_rows(self):
        for url in (
            "/api/v1/subjects/",
            "/api/v1/cases/",
            f"/api/v1/trials/{self.w.trial.slug}/sites/",
            "/api/v1/hospitals/",
            f"/api/v1/cases/{self.w.case1.pk}/files/",
            f"/api/v1/cases/{self.w.case1.pk}/predictions/",
        ):
            response = self.api.get(url)
            self.assertEqual(response.status_code, 200, url)
            self.assert_no_secrets(url, response)
            self.assertNotIn('"H02"', response.content.decode(), url)
