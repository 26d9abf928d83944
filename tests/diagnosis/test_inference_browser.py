"""The whole path in a real browser: a coordinator uploads a photograph and a visual field, completes the
case, and the page shows the progress and then predictions from the DR grader and both glaucoma nets (fundus
and visual field) with their fused glaucoma probability, run by a live worker on Redis."""

import tempfile
from pathlib import Path

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from diagnosis.models import InferenceJob
from tests.support import BrowserTestCase, LiveWorker, image_factories, require_redis_broker
from tests.support.factories import TEST_PASSWORD, TrialWorld
from tests.support.inference import InferenceFixture
from tests.support.registry import register_fundus_glaucoma_model, register_small_models
from tests.support.storage import stored_names
from tests.support.uploads import vf_csv


@tag("browser", "redis", "worker")
class CaseToPredictionInBrowserTests(BrowserTestCase, InferenceFixture, StaticLiveServerTestCase):
    def setUp(self):
        broker = require_redis_broker()
        self.before_objects = stored_names("cases") | stored_names("models") | stored_names("predictions")
        self.addCleanup(self.cleanup)
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        register_small_models()
        register_fundus_glaucoma_model()
        self.worker = LiveWorker(broker_url=broker, queues="gpu,default").start()
        self.addCleanup(self.worker.stop)
        from platform_core.celery import app

        self.worker.wait_ready(app)
        folder = Path(tempfile.mkdtemp(prefix="visus-e2e-"))
        (folder / "photo.jpg").write_bytes(image_factories.jpeg_with_metadata(orientation=1, width=640, height=480))
        (folder / "field.csv").write_bytes(vf_csv("OD"))
        self.paths = [str(folder / "photo.jpg"), str(folder / "field.csv")]

    def test_uploaded_case_gets_predictions_from_all_three_nets_and_the_glaucoma_evidence_on_its_page(self):
        b = self.browser
        b.delete_all_cookies()
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        url = f"{self.live_server_url}/trials/cases/{self.w.case1.pk}/"
        b.get(url)
        b.find_element(By.CSS_SELECTOR, "[data-testid=file-input]").send_keys("\n".join(self.paths))
        WebDriverWait(b, 30).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=upload-item][data-outcome=accepted]")) == 2
        )
        b.get(url)
        Select(b.find_element(By.NAME, "status")).select_by_value("complete")
        self.submit("Save status")
        self.wait_for("[data-testid=inference-jobs]")
        # The page follows the jobs and reloads when they are done.
        self.wait(120).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=prediction]")) == 3,
            message=self.worker.log_tail(),
        )
        self.assertEqual(
            sorted(InferenceJob.objects.filter(case=self.w.case1).values_list("status", flat=True)),
            ["succeeded", "succeeded", "succeeded"],
        )
        grade = b.find_element(By.CSS_SELECTOR, "[data-testid=predicted-grade]").text
        self.assertRegex(grade, r"^[0-4] · (No apparent DR|Mild NPDR|Moderate NPDR|Severe NPDR|PDR)$")
        self.assertTrue(b.find_element(By.CSS_SELECTOR, "[data-testid=glaucoma-probability]").text)
        self.assertTrue(b.find_element(By.CSS_SELECTOR, "[data-testid=fundus-glaucoma-probability]").text)
        # The attention overlay (DR) and the disc region (fundus glaucoma), each in a viewer over its photograph.
        self.wait(20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=overlay-viewer][data-ready=true]")) == 2
        )
        fused = b.find_element(By.CSS_SELECTOR, "[data-testid=fused-glaucoma]").text
        # No fusion calibration fitted for this trial: each modality's evidence, marked uncalibrated.
        self.assertIn("(uncalibrated)", fused)
        self.assertIn("fundus photograph", fused)
        self.assertIn("visual field", fused)
