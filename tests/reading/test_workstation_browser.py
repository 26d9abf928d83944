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


@tag("browser")
class MarkEditingInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    """Lesion marks moved and resized by dragging and with the keyboard, in image pixels, autosaved, and locked
    once the read is signed."""

    keys = WorkstationInBrowserTests.keys

    def geometry(self, mark):
        m = LesionMark.objects.get(pk=mark.pk)
        return (m.x, m.y, m.width, m.height)

    def until_saved(self, mark, test, message):
        self.wait(10).until(lambda d: test(*self.geometry(mark)), message=f"{message}: {self.geometry(mark)}")

    def overlay(self, mark):
        return self.browser.find_element(By.CSS_SELECTOR, f"[data-testid=mark-overlay][data-mark-id='{mark.pk}']")

    def drag(self, element, dx, dy):
        # The whole viewer in view first: pressing focuses it, and a focus that scrolled the page would move the
        # pointer relative to the photograph mid-drag.
        self.browser.execute_script("document.querySelector('[data-testid=viewer]').scrollIntoView({block: 'center'});")
        ActionChains(self.browser).move_to_element(element).click_and_hold().move_by_offset(
            dx // 2, dy // 2
        ).move_by_offset(dx - dx // 2, dy - dy // 2).release().perform()

    def test_a_reader_moves_and_resizes_marks_by_dragging_and_with_the_arrow_keys_until_signed(self):
        w = ReadingWorld(images=True)
        self.addCleanup(w.delete_files)
        read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        photo = w.files[read.case_id]  # 400 x 300 pixels
        box = services.mark_add(
            reader=w.reader,
            read=read,
            case_file=photo,
            kind="haemorrhage",
            shape="box",
            x=100,
            y=100,
            width=80,
            height=60,
        )
        point = services.mark_add(
            reader=w.reader, read=read, case_file=photo, kind="microaneurysm", shape="point", x=300, y=200
        )
        b = self.browser
        self.sign_in(w.reader.email, PASSWORD)
        b.get(f"{self.live_server_url}/reading/reads/{read.pk}/")
        self.wait(20).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=viewer][data-variant=full][data-zoom]")
        )
        self.wait_for(f"[data-testid=mark-overlay][data-mark-id='{box.pk}']")
        per_screen_px = 80 / self.overlay(box).rect["width"]  # image pixels per screen pixel at this zoom
        # Drag the box's body: it moves (the photograph does not pan), in image pixels.
        self.drag(self.overlay(box), 40, 30)
        self.until_saved(
            box,
            lambda x, y, wd, h: abs(x - (100 + 40 * per_screen_px)) < 2 and abs(y - (100 + 30 * per_screen_px)) < 2,
            "the dragged box did not move",
        )
        self.assertEqual(self.geometry(box)[2:], (80, 60))
        self.wait_for(f"[data-testid=mark-overlay][data-mark-id='{box.pk}'][data-selected=true]")
        # Its bottom-right handle resizes it; its top-left handle moves that corner (x, y, width, height).
        x0, y0, _, _ = self.geometry(box)
        self.drag(b.find_element(By.CSS_SELECTOR, "[data-testid=mark-handle][data-handle=se]"), 30, 20)
        self.until_saved(
            box,
            lambda x, y, wd, h: (
                (x, y) == (x0, y0)
                and abs(wd - (80 + 30 * per_screen_px)) < 2
                and abs(h - (60 + 20 * per_screen_px)) < 2
            ),
            "the bottom-right handle did not resize the box",
        )
        x1, y1, w1, h1 = self.geometry(box)
        self.drag(b.find_element(By.CSS_SELECTOR, "[data-testid=mark-handle][data-handle=nw]"), -20, -10)
        self.until_saved(
            box,
            lambda x, y, wd, h: (
                abs(x - (x1 - 20 * per_screen_px)) < 2
                and abs(wd - (w1 + 20 * per_screen_px)) < 2
                and abs(y - (y1 - 10 * per_screen_px)) < 2
                and abs(h - (h1 + 10 * per_screen_px)) < 2
                and abs(x + wd - (x1 + w1)) < 0.01
            ),
            "the top-left handle did not move that corner",
        )
        # A point dragged beyond the photograph's edge stays on it (clamped to the image).
        self.drag(self.overlay(point), int(100 / per_screen_px) + 40, 0)  # 100 image pixels to the edge, and beyond
        self.until_saved(point, lambda x, y, wd, h: x == 400 and abs(y - 200) < 0.01, "the point was not clamped")
        # The keyboard: Esc lets the box go, M selects the box then the point; arrows move it by one pixel,
        # Shift + arrow by ten.
        b.execute_script("document.activeElement.blur();")
        self.keys(Keys.ESCAPE)
        self.wait(5).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-testid=mark-overlay][data-selected]"))
        self.keys("m", "m")
        self.wait_for(f"[data-testid=mark-overlay][data-mark-id='{point.pk}'][data-selected=true]")
        self.keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT, (Keys.SHIFT, Keys.ARROW_UP))
        self.until_saved(point, lambda x, y, wd, h: (x, y) == (397, 190), "the arrow keys did not move the point")
        # Alt + arrows resize the box from its bottom-right corner (the keyboard's corner at first, drawn so); the
        # questions did not take the arrows.
        x2, y2, w2, h2 = self.geometry(box)
        self.keys("m", (Keys.ALT, Keys.ARROW_LEFT), (Keys.ALT, Keys.ARROW_LEFT))
        ActionChains(self.browser).key_down(Keys.ALT).key_down(Keys.SHIFT).send_keys(Keys.ARROW_DOWN).key_up(
            Keys.SHIFT
        ).key_up(Keys.ALT).perform()
        self.until_saved(
            box,
            lambda x, y, wd, h: (x, y) == (x2, y2) and abs(wd - (w2 - 2)) < 0.01 and abs(h - (h2 + 10)) < 0.01,
            "Alt + arrows did not resize the box",
        )
        self.assertIn(f"/reading/reads/{read.pk}/", b.current_url)  # Alt + left arrow did not go back a page
        self.assertEqual(
            b.find_element(By.CSS_SELECTOR, "[data-testid=mark][data-selected=true]").get_attribute("data-shape"), "box"
        )
        self.wait_for("[data-testid=mark-handle][data-handle=se][data-keyboard=true]")
        # X: Alt + arrows move the top-left corner instead (the left and top edges); the right and bottom edges stay.
        x3, y3, w3, h3 = self.geometry(box)
        self.keys("x")
        self.wait_for("[data-testid=mark-handle][data-handle=nw][data-keyboard=true]")
        self.assertIn("top-left corner", b.find_element(By.CSS_SELECTOR, "[data-mark-hint]").text)
        self.keys((Keys.ALT, Keys.ARROW_RIGHT), (Keys.ALT, Keys.ARROW_RIGHT))
        ActionChains(self.browser).key_down(Keys.ALT).key_down(Keys.SHIFT).send_keys(Keys.ARROW_UP).key_up(
            Keys.SHIFT
        ).key_up(Keys.ALT).perform()
        self.until_saved(
            box,
            lambda x, y, wd, h: (
                abs(x - (x3 + 2)) < 0.01
                and abs(y - (y3 - 10)) < 0.01
                and abs(x + wd - (x3 + w3)) < 0.01
                and abs(y + h - (y3 + h3)) < 0.01
            ),
            "X, then Alt + arrows did not move the box's left and top edges",
        )
        # X again: back to the bottom-right corner.
        self.keys("x")
        self.wait_for("[data-testid=mark-handle][data-handle=se][data-keyboard=true]")
        self.assertFalse(b.find_elements(By.CSS_SELECTOR, "[data-testid=mark-handle][data-handle=nw][data-keyboard]"))
        changes = AuditEvent.objects.filter(action="read.mark_change").count()
        self.assertGreaterEqual(changes, 6)
        # Signed in another tab meanwhile: the next move is refused, the mark goes back and the page says why.
        before = self.geometry(box)
        read.refresh_from_db()
        read = services.read_draft_save(
            reader=w.reader,
            read=read,
            version=read.version,
            answers={"icdr_grade": "1", "referable_dr": "no", "confidence": 70},
            confidences={"icdr_grade": 60, "referable_dr": 65},
        )
        services.read_sign(
            read=read, signer=w.reader, password=PASSWORD, meaning=services.MEANING_READ, version=read.version
        )
        self.keys(Keys.ARROW_RIGHT)
        self.wait(10).until(
            lambda d: "signed and locked" in d.find_element(By.CSS_SELECTOR, "[data-mark-hint]").text,
            message="no refusal on the page",
        )
        self.assertEqual(self.geometry(box), before)
        self.assertIn(
            f"({round(before[0])}, {round(before[1])})",
            b.find_element(By.CSS_SELECTOR, "[data-testid=mark][data-shape=box]").text,
        )
        # The signed read's page: dragging a mark pans the photograph and changes nothing.
        b.get(f"{self.live_server_url}/reading/reads/{read.pk}/")
        self.wait_for(f"[data-testid=mark-overlay][data-mark-id='{box.pk}']")
        self.drag(self.overlay(box), 40, 30)
        self.keys("m", Keys.ARROW_RIGHT)
        self.assertEqual(b.find_elements(By.CSS_SELECTOR, "[data-testid=mark-handle], [data-selected]"), [])
        self.assertEqual(self.geometry(box), before)
        self.assertEqual(AuditEvent.objects.filter(action="read.mark_change").count(), changes)
