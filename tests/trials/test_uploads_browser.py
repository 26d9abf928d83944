"""Uploads in headless Chromium: three files, one corrupt; progress, per-file outcome and a preview."""

import tempfile
from pathlib import Path

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.core.files.storage import default_storage
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import BrowserTestCase, image_factories
from tests.support.factories import TEST_PASSWORD, TrialWorld
from tests.support.storage import stored_names
from tests.support.uploads import vf_csv
from trials.models import CaseFile


@tag("browser")
class UploadInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.browser.delete_all_cookies()
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.before = stored_names()
        folder = Path(tempfile.mkdtemp(prefix="visus-browser-"))
        self.files = {
            "fundus.png": image_factories.jpeg_with_metadata(orientation=1, width=640, height=480),
            "broken.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 200,
            "field.csv": vf_csv("OD"),
        }
        self.paths = []
        for name, data in self.files.items():
            path = folder / name
            path.write_bytes(data)
            self.paths.append(str(path))

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

    def test_coordinator_uploads_three_files_and_sees_each_outcome(self):
        b = self.browser
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        b.get(f"{self.live_server_url}/trials/cases/{self.w.case1.pk}/")
        b.find_element(By.CSS_SELECTOR, "[data-testid=file-input]").send_keys("\n".join(self.paths))

        wait = WebDriverWait(b, 30)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=upload-item][data-outcome]")) == 3)
        items = {
            item.find_element(By.CSS_SELECTOR, ".upload-name").text: item
            for item in b.find_elements(By.CSS_SELECTOR, "[data-testid=upload-item]")
        }
        self.assertEqual(items["fundus.png"].get_attribute("data-outcome"), "accepted")
        self.assertEqual(items["field.csv"].get_attribute("data-outcome"), "accepted")
        broken = items["broken.jpg"]
        self.assertEqual(broken.get_attribute("data-outcome"), "rejected")
        self.assertIn("refused:", broken.find_element(By.CSS_SELECTOR, "[data-testid=upload-outcome]").text)
        # A truncated file would be refused again: no Retry (only transient failures offer one).
        self.assertFalse(broken.find_elements(By.XPATH, ".//button[normalize-space()='Retry']"))
        for item in items.values():
            self.assertEqual(item.find_element(By.TAG_NAME, "progress").get_attribute("value"), "100")
        preview = items["fundus.png"].find_element(By.CSS_SELECTOR, "[data-testid=upload-preview]")
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", preview))
        self.assertGreater(int(preview.get_attribute("naturalWidth")), 100)
        self.assertEqual(CaseFile.objects.filter(case=self.w.case1).count(), 2)

        # The Files list updated itself (no reload), and a reload shows the same.
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=case-file]")) == 2)
        b.get(f"{self.live_server_url}/trials/cases/{self.w.case1.pk}/")
        self.assertEqual(len(b.find_elements(By.CSS_SELECTOR, "[data-testid=case-file]")), 2)
        self.assertIn("MD", b.find_element(By.CSS_SELECTOR, "[data-testid=visual-field]").text)
