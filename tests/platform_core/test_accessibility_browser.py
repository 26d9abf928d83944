"""Accessibility and narrow screens in headless Chromium, on every page of the app as the roles that use it:
axe-core (vendored, tests only) finds no serious or critical WCAG 2 A/AA violation (contrast, labels, landmarks),
and at 390 CSS px (a phone) no page scrolls sideways. Pages are found by walking the URL patterns
(tests.support.pages), so pages added later are checked too. Also: the error pages, the error summary's focus and
the focus ring of the file input."""

from __future__ import annotations

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.support import ROOT, BrowserTestCase
from tests.support.factories import TEST_PASSWORD, TrialWorld
from tests.support.page_world import PageWorld
from tests.support.pages import html_pages

AXE = (ROOT / "tests" / "support" / "vendor" / "axe-core" / "axe.min.js").read_text()
RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}})
  .then(r => done(r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => v.id + " (" + v.impact + "): " + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "))))
  .catch(e => done(["axe failed: " + e]));
"""
# A desktop-style viewport 390 px wide: with "mobile" Chromium would zoom out to fit a page that is too wide, and
# innerWidth would grow with it.
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": False}
MAIN_PAGES = ("/", "/trials/", "/audit/", "/reading/")


@tag("browser")
class EveryPageInChromiumTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.w = PageWorld()

    def tearDown(self):
        self.w.delete_files()

    def axe_violations(self) -> list[str]:
        self.browser.set_script_timeout(60)
        self.browser.execute_script(AXE)
        return self.browser.execute_async_script(RUN_AXE)

    def sideways(self) -> int:
        """How many CSS px the page is wider than the viewport (0: it fits)."""
        return self.browser.execute_script(
            "return Math.max(0, document.scrollingElement.scrollWidth - window.innerWidth);"
        )

    def test_every_page_passes_axe_and_fits_a_390px_screen(self):
        pages = html_pages(self.w.people, self.w.values)
        paths = [path for _, path in pages]
        for expected in (
            *MAIN_PAGES,
            f"/trials/{self.w.trial.slug}/",
            f"/trials/{self.w.trial.slug}/subjects/",
            f"/trials/{self.w.trial.slug}/subjects/{self.w.subject1.pseudonym}/",
            f"/trials/{self.w.trial.slug}/subjects/enrol/",
            f"/trials/cases/{self.w.case1.pk}/",
            f"/reading/reads/{self.w.read.pk}/",
            f"/evaluation/trials/{self.w.trial.slug}/exports/",
        ):
            self.assertIn(expected, paths)
        # The trial page as its manager too (the accrual chart), besides the first role that may open it.
        pages.append((self.w.manager, f"/trials/{self.w.trial.slug}/"))
        problems = []
        by_person: dict = {}
        for person, path in pages:
            by_person.setdefault(person, []).append(path)
        for person, person_paths in by_person.items():
            self.sign_in(person.email, TEST_PASSWORD)
            for path in person_paths:
                self.browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
                self.browser.get(self.live_server_url + path)
                self.wait_for("footer")
                problems += [f"{path} as {person.email}: {v}" for v in self.axe_violations()]
                self.browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
                self.browser.get(self.live_server_url + path)
                self.wait_for("footer")
                width = self.browser.execute_script("return window.innerWidth;")
                self.assertLessEqual(width, 400)
                if self.sideways():
                    wide = self.browser.execute_script(
                        "return [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right"
                        " > window.innerWidth + 1).slice(0, 3).map(e => e.tagName + '.' + e.className);"
                    )
                    problems.append(f"{path} as {person.email}: {self.sideways()} px too wide at 390 px ({wide})")
            self.browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.maxDiff = None
        self.assertEqual(problems, [])


@tag("browser")
class ErrorPagesAndFormsInChromiumTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.w = TrialWorld()

    def test_a_reader_on_a_case_url_gets_a_branded_403_with_the_way_to_the_worklist(self):
        self.sign_in("reader@visus.example", TEST_PASSWORD)
        self.browser.get(f"{self.live_server_url}/trials/cases/{self.w.case1.pk}/")
        page = self.wait_for("[data-testid=error-page]")
        self.assertEqual(page.get_attribute("data-status"), "403")
        self.assertIn("read cases from your worklist", page.text)
        header = self.browser.find_element(By.CSS_SELECTOR, ".site-header").value_of_css_property("background-color")
        self.assertIn("11, 93, 122", header)  # styled by visus.css
        self.assertEqual(self.axe_violations(), [])
        self.follow("Open your reading worklist")
        self.assertTrue(self.browser.current_url.endswith("/reading/"))

    def test_an_unknown_page_is_a_branded_404_with_the_navigation(self):
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        self.browser.get(f"{self.live_server_url}/trials/no-such-trial/")
        page = self.wait_for("[data-testid=error-page]")
        self.assertEqual(page.get_attribute("data-status"), "404")
        self.assertTrue(self.browser.find_element(By.CSS_SELECTOR, "nav[aria-label=Main]").is_displayed())
        self.assertEqual(self.axe_violations(), [])
        self.follow("See your trials")
        self.wait_for("[data-testid=trial-list]")

    def test_the_error_summary_takes_the_focus_and_leads_to_each_field(self):
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        self.browser.get(f"{self.live_server_url}/trials/{self.w.trial.slug}/subjects/enrol/")
        # No clinical fact is preselected.
        for name in ("sex", "diabetes_type"):
            selected = self.browser.find_element(By.CSS_SELECTOR, f"select[name={name}] option:checked")
            self.assertEqual((selected.get_attribute("value"), selected.text), ("", "Choose…"))
        self.submit("Enrol")
        summary = self.wait_for("[data-error-summary]")
        active = self.browser.switch_to.active_element
        self.assertEqual(active.get_attribute("data-testid"), "form-errors")
        self.assertGreaterEqual(len(summary.find_elements(By.CSS_SELECTOR, "li")), 8)
        self.assertNotEqual(summary.value_of_css_property("outline-style"), "none")
        summary.find_element(By.LINK_TEXT, "Diabetes type").click()
        self.assertEqual(self.browser.switch_to.active_element.get_attribute("name"), "diabetes_type")
        self.assertEqual(self.axe_violations(), [])

    def test_the_file_input_shows_a_focus_ring(self):
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        self.browser.get(f"{self.live_server_url}/trials/cases/{self.w.case1.pk}/")
        file_input = self.wait_for("[data-testid=file-input]")
        label = file_input.find_element(By.XPATH, "..")
        self.assertEqual(label.value_of_css_property("outline-style"), "none")
        body = self.browser.find_element(By.TAG_NAME, "body")
        for _ in range(60):  # keyboard only, as a keyboard user reaches it
            body.send_keys(Keys.TAB) if _ == 0 else self.browser.switch_to.active_element.send_keys(Keys.TAB)
            if self.browser.switch_to.active_element.get_attribute("data-testid") == "file-input":
                break
        self.assertEqual(self.browser.switch_to.active_element.get_attribute("data-testid"), "file-input")
        self.assertEqual(label.value_of_css_property("outline-style"), "solid")
        self.assertEqual(label.value_of_css_property("outline-width"), "3px")

    axe_violations = EveryPageInChromiumTests.axe_violations
