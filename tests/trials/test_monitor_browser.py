"""Monitoring in headless Chromium (issue 10, items 6-8): a monitor filters the audit trail and downloads it
(fitting the page at 1280 and 390 px), raises a data query that the site answers and the monitor closes, and a
manager moves a trial on through its confirmation page."""

from __future__ import annotations

import csv
import io

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.by import By

from platform_core.audit.models import AuditEvent
from tests.support import BrowserTestCase
from tests.support.factories import TEST_PASSWORD, TrialWorld
from trials.models import DataQuery, Trial


@tag("browser")
class MonitorInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.browser.delete_all_cookies()
        self.w = TrialWorld()

    def page_width_overflow(self) -> int:
        return self.browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )

    def test_a_monitor_filters_the_audit_trail_downloads_it_and_it_fits_the_page(self):
        b = self.browser
        self.sign_in("monitor@visus.example", TEST_PASSWORD)
        self.follow("Audit trail")
        b.find_element(By.NAME, "subject").send_keys(self.w.subject2.pseudonym)
        self.submit("Filter")
        self.assertIn("match the filters", self.wait_for("[data-testid=audit-count]").text)
        objects = [e.text for e in b.find_elements(By.CSS_SELECTOR, "[data-testid=audit-object]")]
        self.assertEqual(set(objects), {self.w.subject2.pseudonym, f"{self.w.subject2.pseudonym} OS day 0"})
        actors = {e.text for e in b.find_elements(By.CSS_SELECTOR, "[data-testid=audit-actor]")}
        self.assertEqual(actors, {f"{self.w.coord2.full_name} (coord2@visus.example)"})
        self.assertLessEqual(self.page_width_overflow(), 0)
        self.addCleanup(b.set_window_size, 1280, 900)
        b.set_window_size(390, 900)
        self.assertLessEqual(self.page_width_overflow(), 0, "the audit trail scrolls sideways at 390 px")
        b.set_window_size(1280, 900)

        export = b.find_element(By.CSS_SELECTOR, "[data-testid=audit-export]").get_attribute("href")
        self.assertIn(f"subject={self.w.subject2.pseudonym}", export)
        text = b.execute_async_script(
            "const done = arguments[arguments.length - 1];fetch(arguments[0]).then(r => r.text()).then(done);",
            export,
        )
        rows = list(csv.reader(io.StringIO(text)))
        self.assertEqual(rows[0][0], "seq")
        self.assertEqual({row[6] for row in rows[1:]}, set(objects))
        event = AuditEvent.objects.get(action="audit_trail.export")
        self.assertEqual(event.actor, self.w.monitor)
        self.assertEqual(event.changes["filters"][1], {"subject": self.w.subject2.pseudonym})

    def test_a_query_is_raised_answered_and_closed_through_the_case_page(self):
        b = self.browser
        case_url = f"{self.live_server_url}/trials/cases/{self.w.case2.pk}/"
        self.sign_in("monitor@visus.example", TEST_PASSWORD)
        b.get(case_url)
        self.wait_for("[data-testid=query-raise]")
        b.find_element(By.CSS_SELECTOR, "[data-testid=query-raise] textarea[name=text]").send_keys(
            "The visit day does not match the source document."
        )
        self.submit("Raise query")
        self.assertIn("Query raised", self.wait_for(".messages").text)
        self.assertEqual(self.wait_for("[data-testid=query-status]").text, "Open")

        self.sign_in("coord2@visus.example", TEST_PASSWORD)
        b.get(case_url)
        query = DataQuery.objects.get()
        b.find_element(By.ID, f"answer-{query.pk}").send_keys("Checked: the source says day 0.")
        self.submit("Send answer")
        self.assertIn("Answer sent.", self.wait_for(".messages").text)
        self.assertEqual(self.wait_for("[data-testid=query-status]").text, "Answered")

        self.sign_in("monitor@visus.example", TEST_PASSWORD)
        b.get(f"{self.live_server_url}/trials/dr-trial/queries/")
        self.assertIn("The visit day does not match", self.wait_for("[data-testid=query-list]").text)
        self.follow(f"{self.w.subject2.pseudonym} {self.w.case2.label}")
        self.assertIn("Checked: the source says day 0.", self.wait_for("[data-testid=data-queries]").text)
        self.submit("Close query")
        self.assertEqual(self.wait_for("[data-testid=query-status]").text, "Closed")
        query.refresh_from_db()
        self.assertEqual(query.status, "closed")
        self.assertEqual(
            list(AuditEvent.objects.filter(object_id=str(query.pk)).order_by("seq").values_list("action", flat=True)),
            ["data_query.raise", "data_query.answer", "data_query.close"],
        )

    def test_a_manager_moves_the_trial_to_reading_after_confirming(self):
        b = self.browser
        self.sign_in("manager@visus.example", TEST_PASSWORD)
        b.get(f"{self.live_server_url}/trials/dr-trial/")
        self.click_and_load(b.find_element(By.CSS_SELECTOR, "[data-testid=transition-reading]"))
        effects = self.wait_for("[data-testid=transition-effects]").text
        self.assertIn("Enrolment stops", effects)
        self.assertEqual(Trial.objects.get(slug="dr-trial").status, "recruiting")  # nothing moved yet
        self.submit("Confirm: move to reading")
        self.assertEqual(self.wait_for("[data-testid=trial-status]").text, "Reading")
        self.assertIn("The trial is now reading.", b.find_element(By.CSS_SELECTOR, ".messages").text)
        self.assertEqual(Trial.objects.get(slug="dr-trial").status, "reading")
