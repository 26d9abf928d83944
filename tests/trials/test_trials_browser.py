"""Enrolment in headless Chromium: a coordinator enrols through the page and is isolated from site B."""

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.support import BrowserTestCase
from tests.support.factories import TEST_PASSWORD, TrialWorld


@tag("browser")
class EnrolmentInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.browser.delete_all_cookies()
        self.w = TrialWorld()

    def test_coordinator_enrols_a_subject_and_cannot_reach_the_other_site(self):
        b = self.browser
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        self.follow("Trials")
        self.follow("P-dr-trial")
        self.follow("Enrol a subject")
        for name in ("inclusion_0", "inclusion_1"):
            b.find_element(By.CSS_SELECTOR, f"input[name={name}][value=yes]").click()
        b.find_element(By.CSS_SELECTOR, "input[name=exclusion_0][value=no]").click()
        consent = b.find_element(By.NAME, "consent_date")
        b.execute_script("arguments[0].value = '2026-04-02'", consent)
        b.find_element(By.NAME, "consent_form_version").send_keys("v2")
        Select(b.find_element(By.NAME, "sex")).select_by_visible_text("Male")
        b.find_element(By.NAME, "age").send_keys("58")
        Select(b.find_element(By.NAME, "diabetes_type")).select_by_visible_text("Type 2")
        self.submit("Enrol")
        heading = self.wait_for("[data-testid=subject-pseudonym]")
        self.assertEqual(heading.text, "DR01-H01-0002")
        self.assertIn("Subject enrolled: DR01-H01-0002", b.page_source)

        # The other site's subject, by URL: not found, and nothing of it shown.
        b.get(f"{self.live_server_url}/trials/dr-trial/subjects/{self.w.subject2.pseudonym}/")
        self.assertNotIn(self.w.subject2.pseudonym, b.find_element(By.TAG_NAME, "body").text)
        self.assertIn("Page not found", b.title)  # the branded 404 page
        b.get(f"{self.live_server_url}/trials/dr-trial/subjects/")
        listing = b.find_element(By.CSS_SELECTOR, "[data-testid=subject-list]").text
        self.assertIn("DR01-H01-0002", listing)
        self.assertNotIn("DR01-H02", listing)

    def test_manager_sees_the_accrual_chart_drawn_by_plotly(self):
        self.sign_in("manager@visus.example", TEST_PASSWORD)
        self.browser.get(f"{self.live_server_url}/trials/dr-trial/")
        chart = self.wait_for("[data-testid=accrual-chart][data-rendered=true]", timeout=15)
        self.assertTrue(chart.find_elements(By.CSS_SELECTOR, "svg.main-svg"))
        self.assertIn("H01 enrolled (1)", chart.text)
