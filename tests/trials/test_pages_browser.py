"""The remaining everyday pages in headless Chromium: trial set-up by a manager, a coordinator's case
and withdrawal forms, password change, the audit trail and the API docs."""

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.support import BrowserTestCase
from tests.support.factories import TEST_PASSWORD, TrialWorld
from trials.models import Subject, Trial, TrialSite


@tag("browser")
class EverydayPagesInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.w = TrialWorld()

    def test_manager_sets_up_a_trial_adds_a_site_and_opens_recruiting(self):
        b = self.browser
        self.sign_in("manager@visus.example", TEST_PASSWORD)
        b.get(f"{self.live_server_url}/trials/")
        self.follow("New trial")
        for name, value in (
            ("protocol_number", "GL-77"),
            ("title", "Glaucoma fields"),
            ("slug", "gl-77"),
            ("subject_prefix", "GL77"),
        ):
            b.find_element(By.NAME, name).send_keys(value)
        b.find_element(By.CSS_SELECTOR, "input[name=modalities][value=visual_field]").click()
        b.find_element(By.CSS_SELECTOR, "input[name=reading_form][value=glaucoma]").click()
        b.find_element(By.NAME, "inclusion_criteria").send_keys("Adult\nGlaucoma suspect")
        self.submit("Create draft")
        self.assertEqual(self.wait_for("[data-testid=trial-status]").text, "Draft")
        self.follow("Add site")
        Select(b.find_element(By.NAME, "hospital")).select_by_value("H02")
        b.find_element(By.NAME, "enrolment_target").send_keys("12")
        self.submit("Add site")
        self.wait_for("[data-testid=sites]")
        self.follow("Move to recruiting…")  # a confirmation page says what the move does
        self.assertIn("The protocol is fixed from now on", self.wait_for("[data-testid=transition-effects]").text)
        self.submit("Confirm: move to recruiting")
        self.wait_for_text("[data-testid=trial-status]", "Recruiting")
        self.follow("H02")
        target = b.find_element(By.NAME, "enrolment_target")
        target.clear()
        target.send_keys("20")
        b.find_element(By.NAME, "reason").send_keys("second ethics approval")
        self.submit("Save")
        self.wait_for("[data-testid=sites]")
        trial = Trial.objects.get(slug="gl-77")
        self.assertEqual(trial.inclusion_criteria, ["Adult", "Glaucoma suspect"])
        self.assertEqual(TrialSite.objects.get(trial=trial).enrolment_target, 20)

    def test_coordinator_adds_a_case_and_withdraws_a_subject(self):
        b = self.browser
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        b.get(f"{self.live_server_url}/trials/dr-trial/subjects/DR01-H01-0001/")
        Select(b.find_element(By.NAME, "laterality")).select_by_value("OS")
        day = b.find_element(By.NAME, "visit_day")
        day.clear()
        day.send_keys("30")
        self.submit("Add case")
        self.assertIn("Case OS day 30 added.", self.wait_for(".messages").text)
        b.get(f"{self.live_server_url}/trials/dr-trial/subjects/DR01-H01-0001/")
        self.button("Withdraw subject").click()  # no reason: the browser's own check or the server's message stops it
        self.assertFalse(Subject.objects.get(pseudonym="DR01-H01-0001").is_withdrawn)
        b.get(f"{self.live_server_url}/trials/dr-trial/subjects/DR01-H01-0001/")
        b.find_element(By.NAME, "reason").send_keys("moved abroad")
        self.submit("Withdraw subject")
        self.assertIn("withdrawn; their data is kept", self.wait_for(".messages").text)
        self.assertTrue(Subject.objects.get(pseudonym="DR01-H01-0001").is_withdrawn)

    def test_coordinator_records_the_oct_rnfl_thickness_and_sees_it_fused(self):
        self.w.trial.modalities = ["fundus", "oct"]
        self.w.trial.save(update_fields=["modalities"])
        b = self.browser
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        b.get(f"{self.live_server_url}/trials/cases/{self.w.case1.pk}/")
        self.assertEqual(self.wait_for("[data-testid=rnfl-thickness]").text, "not recorded")
        b.find_element(By.NAME, "thickness_um").send_keys("71.5")
        self.submit("Save RNFL thickness")
        self.assertIn("RNFL thickness saved.", self.wait_for(".messages").text)
        self.assertEqual(b.find_element(By.CSS_SELECTOR, "[data-testid=rnfl-thickness]").text, "71.5 µm")
        evidence = b.find_element(By.CSS_SELECTOR, "[data-testid=fused-glaucoma]").text
        self.assertIn("(uncalibrated)", evidence)  # no fusion calibration fitted for this trial
        self.assertIn("OCT RNFL thickness 71.5 µm", evidence)
        field = b.find_element(By.NAME, "thickness_um")
        field.clear()
        field.send_keys("90")
        self.submit("Save RNFL thickness")  # a change without a reason: refused, the old value stays
        self.assertIn("Give a reason", self.wait_for(".messages").text)
        self.assertEqual(b.find_element(By.CSS_SELECTOR, "[data-testid=rnfl-thickness]").text, "71.5 µm")

    def test_a_coordinator_who_also_reads_sees_the_case_blinded(self):
        from platform_core.accounts.models import Membership, Role

        Membership.objects.create(user=self.w.coord1, hospital=self.w.h1, role=Role.READER)
        self.sign_in("coord1@visus.example", TEST_PASSWORD)
        self.browser.get(f"{self.live_server_url}/trials/cases/{self.w.case1.pk}/")
        self.assertIn("blind reading", self.wait_for("[data-testid=blinded]").text)
        self.assertFalse(self.browser.find_elements(By.CSS_SELECTOR, "[data-testid=inference-jobs]"))

    def test_password_change_audit_trail_and_api_docs(self):
        b = self.browser
        self.sign_in("monitor@visus.example", TEST_PASSWORD)
        self.follow("Password")
        b.find_element(By.NAME, "old_password").send_keys(TEST_PASSWORD)
        b.find_element(By.NAME, "new_password1").send_keys("a-fresh-Password-99")
        b.find_element(By.NAME, "new_password2").send_keys("a-fresh-Password-99")
        self.submit("Change password")
        self.assertIn("Your password was changed.", self.wait_for(".messages").text)
        self.follow("Audit trail")
        events = self.wait_for("[data-testid=audit-events]").text
        self.assertIn("subject.enroll", events)
        self.assertIn("trial.transition", events)
        self.follow("API")
        self.wait_for(".swagger-ui .opblock", timeout=15)
        self.assertIn("/api/v1/subjects/", b.find_element(By.TAG_NAME, "body").text)
