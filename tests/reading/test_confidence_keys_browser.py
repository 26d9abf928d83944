"""The reading page's confidence boxes in headless Chromium: digits typed into a confidence stay there, Enter leaves
the box without submitting the form, and a letter leaves it and acts as its shortcut (before, a typed confidence
held every shortcut until Esc)."""

from __future__ import annotations

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from reading import services
from reading.models import Read
from tests.support import BrowserTestCase
from tests.support.reading import PASSWORD, ReadingWorld


@tag("browser")
class ConfidenceKeysInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def keys(self, *sequence):
        ActionChains(self.browser).send_keys(*sequence).perform()

    def value(self, name):
        return self.browser.find_element(By.CSS_SELECTOR, f"[name={name}]").get_attribute("value")

    def active_name(self):
        return self.browser.switch_to.active_element.get_attribute("name") or ""

    def test_a_typed_confidence_lets_the_shortcuts_act_again(self):
        w = ReadingWorld()
        read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        b = self.browser
        self.sign_in(w.reader.email, PASSWORD)
        b.get(f"{self.live_server_url}/reading/reads/{read.pk}/")
        self.wait_for("[data-read-form]")
        b.execute_script("window.__samePage = true;")
        # The grade's confidence, typed: the digits stay in the box; J (next question) leaves it and acts, and Y
        # then answers the yes-or-no question it moved to.
        b.find_element(By.CSS_SELECTOR, "[name=c_icdr_grade]").click()
        self.keys("8", "5")
        self.assertEqual(self.value("c_icdr_grade"), "85")
        self.keys("j")
        self.assertNotEqual(self.active_name(), "c_icdr_grade")
        self.assertEqual(self.value("c_icdr_grade"), "85")  # the letter did not go into the number
        self.keys("y")
        self.assertEqual(self.value("q_referable_dr"), "yes")
        # Enter leaves the box and does not submit the form; the digit keys answer again.
        b.find_element(By.CSS_SELECTOR, "[name=c_referable_dr]").click()
        self.keys("7", "0", Keys.ENTER)
        self.assertEqual(self.value("c_referable_dr"), "70")
        self.assertNotEqual(self.active_name(), "c_referable_dr")
        self.assertTrue(b.execute_script("return window.__samePage === true;"), "Enter submitted the form")
        self.keys("k", "3")
        self.assertEqual(self.value("q_icdr_grade"), "3")
        self.wait(10).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "[data-autosave-status]").get_attribute("data-state") == "saved",
            message="the draft was not autosaved",
        )
        read = Read.objects.get(pk=read.pk)
        self.assertEqual((read.answers.get("icdr_grade"), read.answers.get("referable_dr")), ("3", "yes"))
        self.assertEqual(read.confidences, {"icdr_grade": 85, "referable_dr": 70})
        # The key legend says so.
        self.keys("?")
        legend = self.wait_for("[data-testid=typing-hint]")
        self.wait(5).until(lambda d: legend.is_displayed())
        self.assertIn("Enter leaves it", legend.text)
