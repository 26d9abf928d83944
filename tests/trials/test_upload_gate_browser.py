"""The upload gate in headless Chromium, as a coordinator uses it: a screenshot of the Visus trial list is refused
as not a fundus photograph, permanent refusals offer no Retry (a server failure does), an exception is confirmed
with a reason, the Files list and the checklist update themselves, files are superseded and withdrawn, and an
empty case is not completed."""

import tempfile
from pathlib import Path
from unittest import mock

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.core.files.storage import default_storage
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from platform_core.audit.models import AuditEvent
from tests.support import BrowserTestCase, image_factories
from tests.support.factories import TEST_PASSWORD, TrialWorld
from tests.support.storage import stored_names
from trials.file_services import case_file_upload
from trials.models import CaseFile


@tag("browser")
class UploadGateInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.browser.delete_all_cookies()
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.before = stored_names()
        self.folder = Path(tempfile.mkdtemp(prefix="visus-gate-"))
        self.case_url = f"{self.live_server_url}/trials/cases/{self.w.case1.pk}/"

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

    def write(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def items(self) -> dict:
        return {
            item.find_element(By.CSS_SELECTOR, ".upload-name").text: item
            for item in self.browser.find_elements(By.CSS_SELECTOR, "[data-testid=upload-item]")
        }

    def wait_outcomes(self, count: int) -> dict:
        self.wait(60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=upload-item][data-outcome]")) >= count
        )
        return self.items()

    def outcome(self, item) -> str:
        return item.find_element(By.CSS_SELECTOR, "[data-testid=upload-outcome]").text

    def retries(self, item) -> list:
        return item.find_elements(By.CSS_SELECTOR, "[data-testid=upload-retry]")

    def test_screenshot_refused_without_retry_exception_confirmed_and_files_list_updates_itself(self):
        b = self.browser
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        b.get(f"{self.live_server_url}/trials/")
        screenshot = self.write("visus-trial-list.png", b.get_screenshot_as_png())
        b.get(self.case_url)
        self.assertTrue(b.find_elements(By.CSS_SELECTOR, "[data-testid=no-files]"))
        checklist = b.find_element(By.CSS_SELECTOR, "[data-testid=case-checklist]").text
        self.assertIn("missing: Fundus photograph", checklist)
        paths = [
            screenshot,
            self.write("empty.jpg", b""),
            self.write("note.jpg", b"Dear colleague, the photographs follow by post.\n"),
            self.write("retina.jpg", (image_factories.HRF / "01_h.jpg").read_bytes()),
            self.write("wide-field.png", image_factories.encoded(image_factories.photo(640, 480, fundus=False), "PNG")),
        ]
        b.find_element(By.CSS_SELECTOR, "[data-testid=file-input]").send_keys("\n".join(paths))
        items = self.wait_outcomes(5)

        shot = items["visus-trial-list.png"]
        self.assertEqual(shot.get_attribute("data-outcome"), "rejected")
        self.assertIn("does not look like a fundus photograph", self.outcome(shot))
        self.assertIn("cannot be stored", self.outcome(shot))  # text in it: no exception offered
        self.assertEqual(shot.find_elements(By.CSS_SELECTOR, "[data-testid=gate-exception-form]"), [])
        self.assertIn("empty", self.outcome(items["empty.jpg"]))
        self.assertIn("This is not an image or DICOM file", self.outcome(items["note.jpg"]))
        self.assertNotIn("header", self.outcome(items["note.jpg"]))  # not the visual-field CSV's column help
        for name in ("visus-trial-list.png", "empty.jpg", "note.jpg", "wide-field.png"):
            self.assertEqual(self.retries(items[name]), [], f"{name} is refused for good: no Retry")
        self.assertEqual(items["retina.jpg"].get_attribute("data-outcome"), "accepted")

        # Without a reload, the Files list shows the accepted photograph with its gradability, and the checklist.
        self.wait(20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=case-file]")) == 1)
        self.assertFalse(b.find_elements(By.CSS_SELECTOR, "[data-testid=no-files]"))
        self.assertIn("Gradable", b.find_element(By.CSS_SELECTOR, "[data-testid=gradability]").text)
        self.assertIn(
            "Fundus photograph: 1 photograph, 1 gradable",
            b.find_element(By.CSS_SELECTOR, "[data-testid=case-checklist]").text,
        )

        # The coordinator knows the wide-field image is a fundus photograph: the exception with a reason.
        wide = items["wide-field.png"]
        self.assertTrue(items["empty.jpg"].find_elements(By.CSS_SELECTOR, "[data-testid=gate-exception-form]") == [])
        wide.find_element(By.CSS_SELECTOR, "[data-testid=gate-exception-reason]").send_keys("Optos wide-field image")
        wide.find_element(By.CSS_SELECTOR, "[data-testid=gate-exception-submit]").click()
        self.wait(60).until(lambda d: wide.get_attribute("data-outcome") == "accepted")
        self.assertIn("stored by exception", self.outcome(wide))
        self.wait(20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=case-file]")) == 2)
        note = b.find_element(By.CSS_SELECTOR, "[data-testid=gate-exception]").text
        self.assertIn("Reason given: Optos wide-field image", note)
        event = AuditEvent.objects.get(action="case_file.gate_exception")
        self.assertEqual((event.reason, event.actor), ("Optos wide-field image", self.w.coord1))
        self.assertEqual(CaseFile.objects.filter(case=self.w.case1).count(), 2)

    def test_a_server_failure_offers_retry_and_the_retry_succeeds(self):
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        self.browser.get(self.case_url)
        path = self.write("retina.jpg", (image_factories.HRF / "02_h.jpg").read_bytes())
        failing = mock.patch("trials.file_apis.case_file_upload", side_effect=RuntimeError("storage down"))
        with failing, self.assertLogs("django.request", "ERROR"):
            self.browser.find_element(By.CSS_SELECTOR, "[data-testid=file-input]").send_keys(path)
            item = self.wait_outcomes(1)["retina.jpg"]
        self.assertEqual(item.get_attribute("data-outcome"), "failed")
        self.assertIn("you can retry", self.outcome(item))
        self.retries(item)[0].click()
        self.wait(60).until(lambda d: item.get_attribute("data-outcome") == "accepted")
        self.wait(20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=case-file]")) == 1)

    def test_supersede_withdraw_and_an_empty_case_is_not_completed(self):
        old = case_file_upload(
            actor=self.w.coord1, case=self.w.case1, data=(image_factories.HRF / "03_h.jpg").read_bytes()
        ).case_file
        new = case_file_upload(
            actor=self.w.coord1, case=self.w.case1, data=(image_factories.HRF / "04_h.jpg").read_bytes()
        ).case_file
        b = self.browser
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        b.get(self.case_url)
        cards = b.find_elements(By.CSS_SELECTOR, "[data-testid=case-file]")
        self.assertEqual(len(cards), 2)
        first = cards[0].find_element(By.CSS_SELECTOR, "[data-testid=retire-file]")
        first.find_element(By.TAG_NAME, "summary").click()
        first.find_element(By.CSS_SELECTOR, "input[name=action][value=supersede]").click()
        Select(first.find_element(By.NAME, "replacement")).select_by_value(str(new.pk))
        first.find_element(By.NAME, "reason").send_keys("sharper retake")
        self.click_and_load(first.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        self.assertIn("File marked as superseded.", b.page_source)
        status = b.find_element(By.CSS_SELECTOR, "[data-file-status=superseded] [data-testid=file-status]").text
        self.assertIn(f"Superseded by {new.sha256[:12]}: sharper retake", status)
        old.refresh_from_db()
        self.assertEqual(old.status, "superseded")

        remaining = b.find_element(By.CSS_SELECTOR, "[data-file-status=accepted] [data-testid=retire-file]")
        remaining.find_element(By.TAG_NAME, "summary").click()
        remaining.find_element(By.CSS_SELECTOR, "input[name=action][value=withdraw]").click()
        remaining.find_element(By.NAME, "reason").send_keys("wrong subject")
        self.click_and_load(remaining.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        self.assertIn("File withdrawn.", b.page_source)
        self.assertIn("0 active files", b.find_element(By.CSS_SELECTOR, "[data-testid=active-count]").text)
        self.assertIn(
            "missing: Fundus photograph", b.find_element(By.CSS_SELECTOR, "[data-testid=case-checklist]").text
        )

        Select(b.find_element(By.NAME, "status")).select_by_value("complete")
        self.submit("Save status")
        self.assertIn("The case has no files, so it cannot be completed", b.page_source)
        self.assertEqual(b.find_element(By.CSS_SELECTOR, "[data-testid=case-status]").text, "Open")
