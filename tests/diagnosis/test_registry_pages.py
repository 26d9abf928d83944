"""The model registry in the app (issue 10, item 5): model cards, versions, where each ran; register, activate
and retire through the registry's services; trial managers only."""

from __future__ import annotations

import tempfile

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase, tag
from selenium.webdriver.common.by import By

from diagnosis.forms import parse_metrics
from diagnosis.models import InferenceJob, ModelVersion
from diagnosis.registry import model_register
from platform_core.accounts.models import Role
from platform_core.audit.models import AuditEvent
from tests.support import BrowserTestCase
from tests.support.factories import TEST_PASSWORD, HospitalFactory, TrialWorld, make_trial, member
from tests.support.registry import CARD, checkpoint_bytes, small_dr_network, small_vf_network
from tests.support.storage import stored_names

FULL_CARD = {
    "intended_use": "Referable diabetic retinopathy from one fundus photograph, in trials.",
    "training_data": "EyePACS subset, 3,000 images.",
    "metrics": {"auc": 0.912, "kappa": 0.81},
    "metrics_dataset": "Messidor-2 held-out set, 1,748 images",
    "limitations": "Not validated on ultra-widefield images.",
    "not_for_clinical_use": True,
}


def plain_state_dict() -> bytes:
    """A bare state dict (no Visus checkpoint envelope): the page's configuration is then the one used."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(small_dr_network().state_dict(), buffer)
    return buffer.getvalue()


def register_form(weights: bytes, **overrides):
    data = {
        "name": "dr-screen",
        "version": "2.0",
        "checkpoint": SimpleUploadedFile("dr.pt", weights),
        "intended_use": "Referable DR in trials.",
        "training_data": "Synthetic fundus images.",
        "metrics": "auc: 0.9\nkappa: 0.8",
        "metrics_dataset": "held-out synthetic set, 40 images",
        "limitations": "Synthetic data only.",
        "not_for_clinical_use": "on",
    }
    data.update(overrides)
    return data


class RegistryPageTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.before = stored_names("models")
        self.model = model_register(
            actor=None,
            name="dr-screen",
            version="1.0",
            weights=checkpoint_bytes(small_dr_network()),
            model_card=FULL_CARD,
        )
        self.client.force_login(self.w.manager)

    def tearDown(self):
        from django.core.files.storage import default_storage

        for name in stored_names("models") - self.before:
            default_storage.delete(name)

    def test_only_trial_managers_see_the_registry(self):
        for user in (self.w.reader, self.w.coord1, self.w.monitor, self.w.statistician):
            self.client.force_login(user)
            for url in ("/diagnosis/models/", f"/diagnosis/models/{self.model.pk}/", "/diagnosis/models/register/"):
                self.assertEqual(self.client.get(url).status_code, 403, (user.email, url))
            response = self.client.post(
                f"/diagnosis/models/{self.model.pk}/status/", {"status": "retired", "reason": "x"}
            )
            self.assertEqual(response.status_code, 403)
        self.model.refresh_from_db()
        self.assertEqual(self.model.status, "active")
        self.client.force_login(self.w.reader)
        self.assertNotContains(self.client.get("/"), "/diagnosis/models/")

    def test_the_model_card_page_shows_the_card_with_its_banner_and_metric_data_set(self):
        page = self.client.get(f"/diagnosis/models/{self.model.pk}/")
        for text in (
            "Referable diabetic retinopathy from one fundus photograph",
            "EyePACS subset",
            "Not validated on ultra-widefield images.",
            "Measured on: Messidor-2 held-out set, 1,748 images",
            "0.912",
            "Not for clinical use.",
            self.model.sha256,
        ):
            self.assertContains(page, text)
        self.assertContains(self.client.get("/diagnosis/models/"), "dr-screen")
        self.assertContains(self.client.get("/"), 'href="/diagnosis/models/"')

    def test_the_card_counts_jobs_per_trial_of_the_managers_trials_only(self):
        InferenceJob.objects.create(case=self.w.case1, model_version=self.model, status="succeeded")
        InferenceJob.objects.create(case=self.w.case2, model_version=self.model, status="failed")
        other_manager = member(Role.TRIAL_MANAGER, HospitalFactory(code="H07"), email="m7@visus.example")
        other_trial = make_trial(
            manager=other_manager, slug="other", prefix="OT01", hospitals=[other_manager.memberships.get().hospital]
        )
        self.assertNotEqual(other_trial.pk, self.w.trial.pk)
        page = self.client.get(f"/diagnosis/models/{self.model.pk}/")
        self.assertContains(page, f"{self.w.trial.protocol_number}: 2 jobs (1 succeeded, 1 failed)")
        self.client.force_login(other_manager)
        page = self.client.get(f"/diagnosis/models/{self.model.pk}/")
        self.assertContains(page, "Not run in your trials")
        self.assertNotContains(page, self.w.trial.protocol_number)

    def test_a_manager_who_reads_in_a_trial_sees_no_job_counts_of_it(self):
        from platform_core.accounts.services import membership_grant

        InferenceJob.objects.create(case=self.w.case1, model_version=self.model, status="succeeded")
        membership_grant(actor=None, user=self.w.manager, hospital=self.w.h1, role=Role.READER)
        page = self.client.get(f"/diagnosis/models/{self.model.pk}/")
        self.assertNotContains(page, self.w.trial.protocol_number)

    def test_registering_from_the_page_goes_through_the_service(self):
        response = self.client.post("/diagnosis/models/register/", register_form(checkpoint_bytes(small_dr_network())))
        version = ModelVersion.objects.get(name="dr-screen", version="2.0")
        self.assertRedirects(response, f"/diagnosis/models/{version.pk}/")
        self.assertEqual(version.model_card["metrics_dataset"], "held-out synthetic set, 40 images")
        self.assertEqual(version.metrics, {"auc": 0.9, "kappa": 0.8})
        self.assertTrue(version.model_card["not_for_clinical_use"])
        event = AuditEvent.objects.get(action="model.register", object_id=str(version.pk))
        self.assertEqual(event.actor_id, self.w.manager.pk)
        page = self.client.get(f"/diagnosis/models/{version.pk}/")
        self.assertContains(page, ">1.0</a>")
        self.assertContains(page, ">2.0</a>")

    def test_the_page_shows_the_services_refusals_and_stores_nothing(self):
        cases = [
            (register_form(b"not a checkpoint"), "could not be read"),
            (register_form(checkpoint_bytes(small_dr_network()), version="1.0"), "already registered"),
            (register_form(checkpoint_bytes(small_dr_network()), sha256="0" * 64), "SHA-256"),
            (register_form(checkpoint_bytes(small_vf_network()), architecture="zoom_in_net"), "Refused"),
            (register_form(checkpoint_bytes(small_dr_network()), metrics="auc = 0.9"), "name: value"),
            (register_form(checkpoint_bytes(small_dr_network()), metrics_dataset=""), "Name the data set"),
            (register_form(checkpoint_bytes(small_dr_network()), intended_use=""), "This field is required"),
            # Hostile configurations (a review found these answered 500): negative or absurd sizes, a wrong type,
            # JSON nested past the parser's recursion limit.
            (register_form(plain_state_dict(), architecture="zoom_in_net", config='{"anet_hidden": -5}'), "between 0"),
            (
                register_form(plain_state_dict(), architecture="zoom_in_net", config='{"m_widths": [-1, 2]}'),
                "between 0",
            ),
            (register_form(plain_state_dict(), architecture="zoom_in_net", config='{"dropout": "x"}'), "wrong type"),
            (register_form(plain_state_dict(), config="[" * 10000 + "]" * 10000), "too deeply"),
        ]
        events, stored = AuditEvent.objects.count(), stored_names("models")
        for data, message in cases:
            with self.subTest(message=message):
                response = self.client.post("/diagnosis/models/register/", data)
                self.assertContains(response, message, status_code=400)
        self.assertEqual(ModelVersion.objects.count(), 1)
        self.assertEqual(AuditEvent.objects.count(), events)
        self.assertEqual(stored_names("models"), stored)

    def test_retire_and_activate_with_a_reason_are_audited_and_a_repeat_is_refused(self):
        url = f"/diagnosis/models/{self.model.pk}/status/"
        no_reason = self.client.post(url, {"status": "retired", "reason": ""})
        self.assertContains(no_reason, "This field is required", status_code=400)
        self.assertRedirects(self.client.post(url, {"status": "retired", "reason": "superseded by 2.0"}), url[:-7])
        self.model.refresh_from_db()
        self.assertEqual(self.model.status, "retired")
        again = self.client.post(url, {"status": "retired", "reason": "double click"})
        self.assertContains(again, "already retired", status_code=400)
        self.assertRedirects(self.client.post(url, {"status": "active", "reason": "2.0 withdrawn"}), url[:-7])
        reasons = list(
            AuditEvent.objects.filter(action="model.status").order_by("seq").values_list("reason", flat=True)
        )
        self.assertEqual(reasons, ["superseded by 2.0", "2.0 withdrawn"])


class MetricsParsingTests(TestCase):
    def test_lines_of_name_and_value(self):
        self.assertEqual(parse_metrics("auc: 0.91\n\n kappa : 0.8 "), {"auc": 0.91, "kappa": 0.8})
        for bad in ("auc 0.9", "auc: high", ": 0.9", "auc: nan"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                parse_metrics(bad)


@tag("browser")
class RegistryInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.browser.delete_all_cookies()
        self.before = stored_names("models")
        hospital = HospitalFactory(code="H01")
        self.manager = member(Role.TRIAL_MANAGER, hospital, email="mia@visus.example", full_name="Mia Manager")
        model_register(
            actor=None, name="dr-screen", version="1.0", weights=checkpoint_bytes(small_dr_network()), model_card=CARD
        )
        self.checkpoint = tempfile.NamedTemporaryFile(suffix=".pt")
        self.checkpoint.write(checkpoint_bytes(small_dr_network(seed=1)))
        self.checkpoint.flush()

    def tearDown(self):
        from django.core.files.storage import default_storage

        self.checkpoint.close()
        for name in stored_names("models") - self.before:
            default_storage.delete(name)

    def fill(self, name: str, value: str) -> None:
        element = self.browser.find_element(By.NAME, name)
        element.clear()
        element.send_keys(value)

    def test_a_manager_registers_retires_and_activates_a_version_from_the_pages(self):
        self.sign_in("mia@visus.example", TEST_PASSWORD)
        self.follow("Models")
        self.follow("Register a model version")
        self.fill("name", "dr-screen")
        self.fill("version", "2.0")
        self.browser.find_element(By.NAME, "checkpoint").send_keys(self.checkpoint.name)
        self.fill("intended_use", "Referable DR in trials.")
        self.fill("training_data", "Synthetic fundus images.")
        self.fill("metrics", "auc: 0.93")
        self.fill("limitations", "Synthetic data only.")
        self.submit("Register")
        self.assertIn("Name the data set", self.wait_for(".field.has-error").text)
        self.browser.find_element(By.NAME, "checkpoint").send_keys(self.checkpoint.name)  # files are not kept
        self.fill("metrics_dataset", "held-out synthetic set, 40 images")
        self.submit("Register")
        self.assertIn("dr-screen 2.0 registered and active", self.wait_for(".messages").text)
        self.assertIn(
            "Not for clinical use",
            self.browser.find_element(By.CSS_SELECTOR, "[data-testid=not-for-clinical-use]").text,
        )
        self.assertIn(
            "held-out synthetic set", self.browser.find_element(By.CSS_SELECTOR, "[data-testid=metrics]").text
        )
        version = ModelVersion.objects.get(name="dr-screen", version="2.0")
        self.browser.find_element(By.ID, f"reason-{version.pk}").send_keys("waiting for the validation report")
        self.submit("Retire 2.0")
        self.assertEqual(self.wait_for("[data-testid=model-status]").text, "Retired")
        self.browser.find_element(By.ID, f"reason-{version.pk}").send_keys("validation report accepted")
        self.submit("Activate 2.0")
        self.assertIn("activated", self.wait_for(".messages").text)
        self.assertEqual(self.browser.find_element(By.CSS_SELECTOR, "[data-testid=model-status]").text, "Active")
        version.refresh_from_db()
        self.assertEqual(version.status, "active")
        self.assertEqual(AuditEvent.objects.filter(action="model.status", object_id=str(version.pk)).count(), 2)
