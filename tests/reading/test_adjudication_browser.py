"""The adjudicator in headless Chromium (issue 11, item 15): from the worklist to the adjudication queue, sees
the prior reads of a discordant case, signs its reference standard (the session's first signature with the
e-mail address and password), then a second one with the password only."""

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from reading.models import Adjudication
from tests.support import BrowserTestCase
from tests.support.reading import PASSWORD, ReadingWorld
from trials.models import ReferenceStandard

NO_DR = {"icdr_grade": "0", "referable_dr": "no", "confidence": 90}
SEVERE = {"icdr_grade": "4", "referable_dr": "yes", "confidence": 90}


@tag("browser")
class AdjudicatorInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.w = ReadingWorld()
        for _ in self.w.cases:  # both cases discordant: no DR against proliferative
            self.w.signed_read(self.w.reader, answers=NO_DR)
            self.w.signed_read(self.w.reader2, answers=SEVERE)

    def sign_adjudication(self, adjudication, grade, *, with_email):
        b = self.browser
        section = b.find_element(By.CSS_SELECTOR, f"input[name=adjudication][value='{adjudication.pk}']")
        form = section.find_element(By.XPATH, "./ancestor::form")
        Select(form.find_element(By.NAME, f"{adjudication.pk}-icdr_grade")).select_by_value(grade)
        emails = form.find_elements(By.NAME, f"{adjudication.pk}-username")
        self.assertEqual(bool(emails), with_email)
        if emails:
            emails[0].send_keys(self.w.adjudicator.email)
        form.find_element(By.NAME, f"{adjudication.pk}-password").send_keys(PASSWORD)
        self.click_and_load(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))

    def test_an_adjudicator_sees_the_prior_reads_and_signs_the_reference_standard(self):
        b = self.browser
        self.sign_in(self.w.adjudicator.email, PASSWORD)
        b.get(f"{self.live_server_url}/reading/")
        self.follow("Adjudication queue")
        self.assertIn("unblinded by design", b.page_source)
        sections = b.find_elements(By.CSS_SELECTOR, "[data-testid=adjudication]")
        self.assertEqual(len(sections), 2)
        prior = sections[0].find_elements(By.CSS_SELECTOR, "tbody tr")
        self.assertEqual(len(prior), 2)  # the two readers' signed reads
        self.assertIn("referable discordance", sections[0].text)
        self.assertIn("ICDR diabetic retinopathy grade: 4 Proliferative", sections[0].text)  # labels, not keys
        # The case's image beside the prior reads, served to the panel only.
        image = sections[0].find_element(By.CSS_SELECTOR, "[data-testid=adjudication-images] img")
        src = image.get_attribute("src").replace(self.live_server_url, "")
        self.client.force_login(self.w.reader)  # a reader who is not on the panel
        self.assertEqual(self.client.get(src).status_code, 404)
        self.client.force_login(self.w.adjudicator)
        self.assertIn(self.client.get(src).status_code, {200, 302})  # served, or a presigned redirect to S3
        self.wait().until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
        first, second = Adjudication.objects.order_by("created_at")
        self.sign_adjudication(first, "3", with_email=True)
        self.assertIn("the reference standard is recorded", self.wait_for(".messages, [role=status]").text)
        reference = ReferenceStandard.objects.get(case=first.case)
        self.assertEqual((reference.icdr_grade, reference.source), (3, "adjudication"))
        # Later in the same session: the password only.
        self.sign_adjudication(second, "1", with_email=False)
        second.refresh_from_db()
        self.assertEqual((second.status, second.signature_name), ("signed", self.w.adjudicator.full_name))
        self.assertEqual(ReferenceStandard.objects.get(case=second.case).icdr_grade, 1)


@tag("browser")
class ReadingOversightInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    """The manager's reset, calibration and lock pages, and the reader's amend page, in Chromium."""

    def setUp(self):
        self.w = ReadingWorld()

    def test_a_manager_resets_a_draft_marks_a_calibration_case_and_locks_the_reference(self):
        from reading import services
        from reading.models import CalibrationCase, Read, ReadingSetup

        draft = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        b = self.browser
        self.sign_in(self.w.manager.email, PASSWORD)
        b.get(f"{self.live_server_url}/reading/trials/{self.w.trial.slug}/manage/")
        self.follow("Unsigned reads (reset)")
        b.find_element(By.ID, f"reason-{draft.pk}").send_keys("opened by mistake")
        self.submit(f"Reset case {draft.number} of {self.w.reader}")
        self.assertIn("was reset", self.wait_for(".messages").text)
        self.assertFalse(Read.objects.filter(pk=draft.pk).exists())
        self.follow(f"Back to reading of {self.w.trial.protocol_number}")
        self.follow("Calibration cases and reader drift")
        Select(b.find_element(By.NAME, "case")).select_by_value(str(self.w.case1.pk))
        Select(b.find_element(By.NAME, "q_icdr_grade")).select_by_value("0")
        self.submit("Mark as calibration case")
        self.assertIn("Calibration case marked", self.wait_for(".messages").text)
        self.assertEqual(CalibrationCase.objects.get().known_answers, {"icdr_grade": "0"})
        self.follow(f"Back to reading of {self.w.trial.protocol_number}")
        self.follow("Reference standard and lock")
        b.find_element(By.NAME, "username").send_keys(self.w.manager.email)
        b.find_element(By.NAME, "password").send_keys(PASSWORD)
        self.submit("Sign and lock")
        self.wait_for("[data-testid=reference-locked]")
        self.assertIsNotNone(ReadingSetup.objects.get(trial=self.w.trial).reference_locked_at)

    def test_a_reader_amends_a_signed_read_with_a_reason_and_a_new_signature(self):
        read = self.w.signed_read(self.w.reader)
        b = self.browser
        self.sign_in(self.w.reader.email, PASSWORD)
        b.get(f"{self.live_server_url}/reading/")
        self.follow("Your signed reads (amend)")
        self.follow(f"Amend case {read.number}")
        Select(b.find_element(By.NAME, "q_icdr_grade")).select_by_value("1")
        b.find_element(By.NAME, "reason").send_keys("second look at the photograph")
        b.find_element(By.NAME, "username").send_keys(self.w.reader.email)
        b.find_element(By.NAME, "password").send_keys(PASSWORD)
        self.submit("Amend and sign")
        self.assertIn("amended and signed again", self.wait_for(".messages").text)
        read.refresh_from_db()
        self.assertEqual(read.answers["icdr_grade"], "1")
