"""The AI output of a case with two photographs, in Chromium: the ICDR wording and the referable call, one
prediction per photograph, the attention overlay in a zoomable viewer beside the original (zoom, toggle,
opacity, legend), and the engineering detail shown to a trial manager but not to a coordinator."""

from __future__ import annotations

import re
from unittest import mock

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from diagnosis.models import InferenceJob
from diagnosis.registry import clear_model_cache
from diagnosis.services import inference_run
from tests.support import BrowserTestCase, image_factories
from tests.support.factories import TEST_PASSWORD, TrialWorld
from tests.support.registry import register_small_models
from tests.support.storage import stored_names
from trials.file_services import case_file_upload
from trials.services import case_set_status

WORDING = re.compile(r"^[0-4] · (No apparent DR|Mild NPDR|Moderate NPDR|Severe NPDR|PDR)$")


@tag("browser")
class PredictionViewerBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.before = stored_names("cases") | stored_names("models") | stored_names("predictions")
        self.addCleanup(self.cleanup)
        clear_model_cache()
        self.w = TrialWorld()
        self.dr, _ = register_small_models()
        self.case = self.w.case1
        for width, height in ((400, 300), (640, 480)):
            case_file_upload(actor=self.w.coord1, case=self.case, data=image_factories.plain_png(width, height))
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            case_set_status(actor=self.w.coord1, case=self.case, status="complete")
        job = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        inference_run(job_pk=str(job.pk), task_id="browser")  # the worker has its own tests
        self.url = f"{self.live_server_url}/trials/cases/{self.case.pk}/"

    def cleanup(self):
        from django.core.files.storage import default_storage

        clear_model_cache()
        after = stored_names("cases") | stored_names("models") | stored_names("predictions")
        for name in after - self.before:
            default_storage.delete(name)

    def open_case(self, email):
        self.sign_in(email, TEST_PASSWORD)
        self.browser.get(self.url)
        self.wait(20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=overlay-viewer][data-ready=true]")) == 2,
            message="the overlay viewers did not load both images",
        )

    def js(self, script, *args):
        return self.browser.execute_script(script, *args)

    def test_a_coordinator_reads_the_wording_and_zooms_toggles_and_fades_the_overlay(self):
        b = self.browser
        self.open_case("coord1@visus.example")
        files = b.find_elements(By.CSS_SELECTOR, "[data-testid=prediction-file-label]")
        self.assertEqual([f.text.split(" · ")[0] for f in files], ["Photograph 1 of 2", "Photograph 2 of 2"])
        self.assertRegex(b.find_element(By.CSS_SELECTOR, "[data-testid=case-grade]").text, WORDING)
        for grade in b.find_elements(By.CSS_SELECTOR, "[data-testid=predicted-grade]"):
            self.assertRegex(grade.text, WORDING)
        self.assertIn(b.find_element(By.CSS_SELECTOR, "[data-testid=case-call]").text, {"Referable", "Not referable"})
        self.assertIn("worst photograph decides", b.find_element(By.CSS_SELECTOR, "[data-testid=combination]").text)
        self.assertEqual(b.find_element(By.CSS_SELECTOR, "[data-testid=operating-point]").text, "50%")
        percents = [e.text for e in b.find_elements(By.CSS_SELECTOR, "[data-testid=probability-percent]")]
        self.assertEqual(len(percents), 10)
        self.assertTrue(all(re.fullmatch(r"(<1|>99|\d{1,3}(\.\d)?)%", p) for p in percents), percents)
        legend = b.find_element(By.CSS_SELECTOR, "[data-testid=overlay-legend]").text
        self.assertIn("Cyan: where the network looked", legend)
        self.assertIn("Yellow boxes", legend)
        text = b.find_element(By.CSS_SELECTOR, "[data-testid=inference]").text
        self.assertNotIn("Runtime", text)
        self.assertNotIn(" ms", text)

        figure = b.find_element(By.CSS_SELECTOR, "[data-testid=overlay-viewer]")
        zoom = "return arguments[0].visusViewers[arguments[1]].viewport.getZoom()"
        before = self.js(zoom, figure, "overlaid")
        figure.find_element(By.XPATH, ".//button[normalize-space()='Zoom in']").click()
        self.wait().until(lambda d: self.js(zoom, figure, "overlaid") > before * 1.4, message="Zoom in did nothing")
        # The original beside it follows.
        self.wait().until(lambda d: abs(self.js(zoom, figure, "original") - self.js(zoom, figure, "overlaid")) < 1e-3)
        figure.find_element(By.XPATH, ".//button[normalize-space()='Reset view']").click()
        self.wait().until(lambda d: abs(self.js(zoom, figure, "overlaid") - before) < 1e-3, message="no reset")

        opacity = "return arguments[0].visusViewers.layer().getOpacity()"
        self.assertEqual(self.js(opacity, figure), 1)
        toggle = figure.find_element(By.CSS_SELECTOR, "[data-control=toggle]")
        toggle.click()
        self.assertEqual(self.js(opacity, figure), 0)
        toggle.click()
        self.assertEqual(self.js(opacity, figure), 1)
        slider = figure.find_element(By.CSS_SELECTOR, "[data-control=opacity]")
        slider.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT)
        self.assertAlmostEqual(self.js(opacity, figure), 0.8)
        self.assertEqual(figure.find_element(By.CSS_SELECTOR, "[data-control=opacity-value]").text, "80%")
        # The overlaid view holds the photograph and the overlay layer; the original holds the photograph only.
        count = "return arguments[0].visusViewers[arguments[1]].world.getItemCount()"
        self.assertEqual((self.js(count, figure, "overlaid"), self.js(count, figure, "original")), (2, 1))

    def test_the_ai_section_fits_a_390_px_phone(self):
        self.browser.set_window_size(390, 900)
        self.addCleanup(self.browser.set_window_size, 1280, 900)
        self.open_case("manager@visus.example")
        section = self.browser.find_element(By.CSS_SELECTOR, "[data-testid=inference]")
        widths = self.js("return [arguments[0].scrollWidth, arguments[0].clientWidth]", section)
        self.assertLessEqual(widths[0], widths[1], "the AI section scrolls sideways at 390 px")

    def test_a_manager_sees_runtime_device_and_job_ids(self):
        self.open_case("manager@visus.example")
        details = self.browser.find_elements(By.CSS_SELECTOR, "[data-testid=engineering-detail]")
        self.assertEqual(len(details), 2)
        self.assertRegex(details[0].text, r"Runtime\s+\d+ ms on cpu")
        job = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        self.assertIn(str(job.pk), self.browser.find_element(By.CSS_SELECTOR, "[data-testid=inference]").text)
