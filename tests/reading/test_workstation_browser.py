"""The reader workstation in headless Chromium (issue 11, item 15): a reader grades three cases with the
keyboard only, zooms the deep-zoom viewer, marks a lesion and signs each read with the password; the AI
result of a case they have not signed is refused; in the AI-aided phase they see the heatmap."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from django.utils import timezone
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from platform_core.audit.models import AuditEvent
from reading import services
from reading.models import LesionMark, Read
from tests.support import BrowserTestCase
from tests.support.reading import PASSWORD, ReadingWorld


def prediction_for(world, case):
    from diagnosis.models import InferenceJob, Prediction
    from tests.support.registry import register_small_models

    model, _ = register_small_models()
    job = InferenceJob.objects.create(case=case, model_version=model, status="succeeded")
    return Prediction.objects.create(
        job=job,
        case=case,
        model_version=model,
        runtime_ms=1.0,
        attention_overlay=world.files[case.pk].thumbnail.name,
        class_probabilities=[0.05, 0.1, 0.6, 0.2, 0.05],
        grade=2,
        referable_probability=0.8765432,
        crop_boxes=[[150, 100, 250, 200]],
        details={"image_size": [400, 300]},
    )


@tag("browser")
class WorkstationInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def keys(self, *sequence):
        """Key presses sent to whatever has the focus (the page itself unless a field was focused)."""
        chain = ActionChains(self.browser)
        for item in sequence:
            if isinstance(item, tuple):  # (modifier, key)
                chain.key_down(item[0]).send_keys(item[1]).key_up(item[0])
            else:
                chain.send_keys(item)
        chain.perform()

    def keys_and_load(self, *sequence):
        self.browser.execute_script("window.__visusLeaving = true;")
        self.keys(*sequence)

        def new_page_ready(driver):
            try:
                return bool(
                    driver.execute_script("return !window.__visusLeaving && document.readyState === 'complete';")
                )
            except WebDriverException:
                return False

        self.wait(20).until(new_page_ready, message="the keys did not load a new page")

    def accessibility_violations(self):
        """Serious or critical axe-core violations in the workstation's own parts of the page."""
        from pathlib import Path

        axe = (Path(__file__).resolve().parents[1] / "support/vendor/axe-core/axe.min.js").read_text()
        self.browser.execute_script(axe)
        result = self.browser.execute_async_script(
            "var done = arguments[arguments.length - 1];"
            "var parts = ['[data-testid=viewer-section]', '[data-read-form]', '[data-testid=shortcut-help]',"
            " '[data-testid=ai-outputs]', '[data-testid=vf-printout]'].filter(function (s) {"
            " return document.querySelector(s); }).map(function (s) { return [s]; });"
            "axe.run({include: parts})"
            ".then(function (r) { done(r.violations.filter(function (v) {"
            " return v.impact === 'serious' || v.impact === 'critical'; }).map(function (v) {"
            " return v.id + ': ' + v.nodes.map(function (n) {"
            " return n.target.join(' ') + ' ' + n.failureSummary; }).join(', '); })); });"
        )
        return result

    def viewer_ready(self):
        return self.wait(20).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=viewer][data-variant=full][data-zoom]"),
            message="the viewer never opened the photograph",
        )

    def test_a_reader_grades_three_cases_with_the_keyboard_zooms_marks_and_signs(self):
        w = ReadingWorld(images=True, reading=False)
        self.addCleanup(w.delete_files)
        w.add_cases(1)
        w.start_reading()
        b = self.browser
        self.sign_in(w.reader.email, PASSWORD)
        b.get(f"{self.live_server_url}/reading/")
        self.click_and_load(b.find_element(By.CSS_SELECTOR, "[data-testid=next-unaided]"))
        zoomed = marked = False
        numbers = []
        for _ in range(3):
            number = self.wait_for("[data-testid=case-number]").text
            numbers.append(number)
            self.wait_for("[data-read-form]")
            if not zoomed and b.find_elements(By.CSS_SELECTOR, "[data-testid=viewer]"):
                viewer = self.viewer_ready()
                before = float(viewer.get_attribute("data-zoom"))
                self.keys("+", "+")
                self.wait(10).until(
                    lambda d, before=before: (
                        float(d.find_element(By.CSS_SELECTOR, "[data-testid=viewer]").get_attribute("data-zoom"))
                        > before * 1.5
                    ),
                    message="the viewer did not zoom in",
                )
                zoomed = True
                # A lesion: choose its type, press P (point) and click on the photograph.
                b.find_element(By.CSS_SELECTOR, "[data-testid=mark-kind] option[value=haemorrhage]").click()
                b.execute_script("document.activeElement.blur();")
                self.keys("p")
                self.wait_for("[data-testid=mark-point][aria-pressed=true]")
                ActionChains(b).move_to_element(viewer).click().perform()
                self.wait_for("[data-testid=mark][data-kind=haemorrhage]")
                self.wait_for("[data-testid=mark-overlay]")
                # A box (B, then two opposite corners), its type changed, and the point deleted: editable until
                # signed.
                b.execute_script("document.activeElement.blur();")
                self.keys("b")
                self.wait_for("[data-testid=mark-box][aria-pressed=true]")
                ActionChains(b).move_to_element_with_offset(viewer, -60, -40).click().perform()
                ActionChains(b).move_to_element_with_offset(viewer, 60, 40).click().perform()
                box = self.wait_for("[data-testid=mark][data-shape=box]")
                Select(box.find_element(By.TAG_NAME, "select")).select_by_value("cotton_wool_spot")
                self.wait_for("[data-testid=mark][data-shape=box][data-kind=cotton_wool_spot]")
                point = b.find_element(By.CSS_SELECTOR, "[data-testid=mark][data-shape=point]")
                point.find_element(By.XPATH, ".//button[normalize-space()='Delete mark']").click()
                self.wait(10).until(
                    lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-testid=mark][data-shape=point]")
                )
                b.execute_script("document.activeElement.blur();")
                self.keys(Keys.ESCAPE)
                marked = True
            # Grade 2 (confidence 70), referable yes (confidence 80), overall confidence 60, then sign.
            self.keys((Keys.ALT, "7"), "2", (Keys.ALT, "8"), "y", (Keys.ALT, "6"))
            self.wait(10).until(
                lambda d: (
                    d.find_element(By.CSS_SELECTOR, "[data-autosave-status]").get_attribute("data-state") == "saved"
                ),
                message="the draft was not autosaved",
            )
            self.keys("s")
            if b.switch_to.active_element.get_attribute("name") == "username":  # a session's first signature
                self.keys(w.reader.email, Keys.ENTER)
            self.assertEqual(b.switch_to.active_element.get_attribute("name"), "password")
            self.keys_and_load(PASSWORD, Keys.ENTER)
        self.assertTrue(zoomed and marked)
        self.assertEqual(len(set(numbers)), 3)
        reads = Read.objects.filter(reader=w.reader, phase="unaided").order_by("number")
        self.assertEqual([r.status for r in reads], ["signed"] * 3)
        for read in reads:
            self.assertEqual(read.answers, {"icdr_grade": "2", "referable_dr": "yes", "confidence": 60})
            self.assertEqual(read.confidences, {"icdr_grade": 70, "referable_dr": 80})
            self.assertEqual(read.signature_meaning, services.MEANING_READ)
        self.assertGreaterEqual(sum(r.seconds_on_case for r in reads), 1)  # time on case, sent with the saves
        mark = LesionMark.objects.get(read__reader=w.reader)  # the point was deleted
        self.assertEqual((mark.kind, mark.shape), ("cotton_wool_spot", "box"))
        self.assertTrue(0 < mark.x < 400 and 0 < mark.y < 300, (mark.x, mark.y))
        self.assertTrue(mark.width > 5 and mark.height > 5 and mark.x + mark.width <= 400, mark)
        self.assertAlmostEqual(mark.width / mark.height, 1.5, delta=0.1)  # 120 x 80 screen pixels
        actions = list(AuditEvent.objects.filter(action__startswith="read.mark").values_list("action", flat=True))
        self.assertEqual(sorted(actions), ["read.mark_add", "read.mark_add", "read.mark_change", "read.mark_delete"])
        # All cases read: the last signature led back to the worklist.
        self.wait_for("[data-testid=reader-progress]")

    def test_the_help_overlay_and_a_stale_draft_message(self):
        w = ReadingWorld(images=True)
        self.addCleanup(w.delete_files)
        read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        b = self.browser
        self.sign_in(w.reader.email, PASSWORD)
        b.get(f"{self.live_server_url}/reading/reads/{read.pk}/")
        self.wait_for("[data-read-form]")
        self.keys("?")
        self.wait(5).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=shortcut-help]").is_displayed())
        self.assertIn("Alt", b.find_element(By.CSS_SELECTOR, "[data-testid=shortcut-help]").text)
        self.keys(Keys.ESCAPE)
        self.wait(5).until(lambda d: not d.find_element(By.CSS_SELECTOR, "[data-testid=shortcut-help]").is_displayed())
        # Red-free and CLAHE views (R, C), brightness and contrast.
        self.viewer_ready()
        self.keys("r")
        self.wait_for("[data-testid=viewer][data-variant=redfree]", timeout=20)
        self.keys("c")
        self.wait_for("[data-testid=viewer][data-variant=clahe]", timeout=20)
        b.execute_script(
            "var i = document.querySelector('[data-testid=brightness]'); i.value = 150;"
            "i.dispatchEvent(new Event('input'));"
        )
        self.assertEqual(
            b.find_element(By.CSS_SELECTOR, "[data-testid=viewer]").get_attribute("data-filter"),
            "brightness(1.5) contrast(1)",
        )
        self.assertEqual(self.accessibility_violations(), [])
        # Another tab saves the draft meanwhile: this page's autosave is refused with a clear message.
        services.read_draft_save(
            reader=w.reader, read=read, version=read.version, answers={"icdr_grade": "1"}, confidences={}
        )
        self.keys("3")
        self.wait(10).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "[data-autosave-status]").get_attribute("data-state") == "stale",
            message="no stale message",
        )
        self.assertIn("another tab", b.find_element(By.CSS_SELECTOR, "[data-autosave-status]").text)
        read.refresh_from_db()
        self.assertEqual(read.answers, {"icdr_grade": "1"})

    def test_the_ai_result_of_an_unsigned_case_is_refused_and_the_aided_read_shows_the_heatmap(self):
        w = ReadingWorld(images=True, aided=True)
        self.addCleanup(w.delete_files)
        draft = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        prediction = prediction_for(w, draft.case)
        b = self.browser
        self.sign_in(w.reader.email, PASSWORD)
        for url in (
            f"/reading/reads/{draft.pk}/ai/{prediction.pk}/overlay/",
            f"/diagnosis/predictions/{prediction.pk}/overlay/",
            f"/api/v1/cases/{draft.case_id}/predictions/",
        ):
            b.get(self.live_server_url + url)
            # No image but the site's own logo (the branded error page keeps the header).
            self.assertEqual(b.execute_script("return document.querySelectorAll('main img').length;"), 0, url)
            self.assertNotIn("0.8765432", b.page_source)
        b.get(f"{self.live_server_url}/reading/reads/{draft.pk}/")
        self.viewer_ready()
        self.assertEqual(b.find_elements(By.CSS_SELECTOR, "[data-testid=ai-outputs], [data-testid=heatmap-tools]"), [])
        self.assertIsNone(b.find_element(By.CSS_SELECTOR, "[data-testid=viewer]").get_attribute("data-heatmap"))
        # Signed, and after the washout, the AI-aided read of the same case shows the AI and its heatmap.
        draft = services.read_draft_save(
            reader=w.reader,
            read=draft,
            version=draft.version,
            answers={"icdr_grade": "1", "referable_dr": "no", "confidence": 70},
            confidences={"icdr_grade": 60, "referable_dr": 65},
        )
        services.read_sign(
            read=draft, signer=w.reader, password=PASSWORD, meaning=services.MEANING_READ, version=draft.version
        )
        Read.objects.filter(pk=draft.pk).update(signed_at=timezone.now() - timedelta(days=29))
        aided = services.read_next(reader=w.reader, trial=w.trial, phase="aided")
        self.assertEqual(aided.case_id, draft.case_id)
        b.get(f"{self.live_server_url}/reading/reads/{aided.pk}/")
        self.wait_for("[data-testid=ai-outputs]")
        self.assertIn("0.8765432", b.find_element(By.CSS_SELECTOR, "[data-testid=ai-referable]").text)
        self.wait(20).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=viewer]").get_attribute("data-heatmap") == "shown",
            message="the heatmap was not laid over the photograph",
        )
        self.assertEqual(
            b.execute_script(
                "return document.querySelector('[data-testid=viewer]').querySelectorAll('canvas').length > 0;"
            ),
            True,
        )
        viewer = b.find_element(By.CSS_SELECTOR, "[data-testid=viewer]")
        before = float(viewer.get_attribute("data-zoom"))
        b.find_element(By.CSS_SELECTOR, "[data-testid=zoomed-region]").click()
        self.wait(10).until(
            lambda d: (
                float(d.find_element(By.CSS_SELECTOR, "[data-testid=viewer]").get_attribute("data-zoom")) > before * 2
            ),
            message="the viewer did not zoom to the region the network zoomed into",
        )
        b.execute_script("document.activeElement.blur();")
        self.assertEqual(self.accessibility_violations(), [])
        self.keys("h")
        self.wait(5).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=viewer]").get_attribute("data-heatmap") == "hidden"
        )
        self.assertFalse(b.find_element(By.CSS_SELECTOR, "[data-testid=heatmap-toggle]").is_selected())
