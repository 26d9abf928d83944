"""The audit trail a monitor can use (issue 10, item 6): filters, labels and links instead of keys, a constant
number of queries, and a streamed CSV export that is itself audited. Scoping stays that of audit_events_for."""

from __future__ import annotations

import csv
import io

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from platform_core.audit.models import AuditEvent
from platform_core.audit.selectors import AuditFilters, UnknownAuditObject, audit_events_filtered, audit_label
from tests.support.factories import TrialWorld, enrol, make_trial
from trials.services import case_create, subject_withdraw


class AuditFilterSelectorTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()

    def test_subject_filter_finds_the_subject_and_its_cases_and_nothing_else(self):
        events = audit_events_filtered(self.w.monitor, AuditFilters(objects={"subject": self.w.subject1.pseudonym}))
        kinds = {(e.action, e.object_id) for e in events}
        self.assertIn(("subject.enroll", str(self.w.subject1.pk)), kinds)
        self.assertIn(("case.create", str(self.w.case1.pk)), kinds)
        self.assertFalse(any(e.object_id in (str(self.w.subject2.pk), str(self.w.case2.pk)) for e in events))

    def test_case_filter_takes_the_label_the_case_page_shows_or_its_id(self):
        other = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=7)
        label = f"{self.w.subject1.pseudonym.lower()} od day 0"
        for value in (label, str(self.w.case1.pk)):
            ids = set(
                audit_events_filtered(self.w.monitor, AuditFilters(objects={"case": value})).values_list(
                    "object_id", flat=True
                )
            )
            self.assertEqual(ids, {str(self.w.case1.pk)}, value)
        self.assertNotIn(str(other.pk), ids)

    def test_person_action_and_dates_narrow_the_events(self):
        subject_withdraw(actor=self.w.coord1, subject=self.w.subject1, reason="moved away")
        filters = AuditFilters(actor=self.w.coord1, action="subject.withdraw")
        events = list(audit_events_filtered(self.w.manager, filters))
        self.assertEqual([e.object_id for e in events], [str(self.w.subject1.pk)])
        today = events[0].occurred_at.date()
        self.assertEqual(
            audit_events_filtered(self.w.manager, AuditFilters(date_from=today, date_to=today)).count(),
            AuditEvent.objects.filter(occurred_at__date=today).count(),
        )
        from datetime import timedelta

        self.assertFalse(audit_events_filtered(self.w.manager, AuditFilters(date_to=today - timedelta(days=1))))
        self.assertFalse(audit_events_filtered(self.w.manager, AuditFilters(date_from=today + timedelta(days=1))))

    def test_a_subject_outside_the_reviewers_trials_is_unknown_to_them(self):
        other = make_trial(manager=self.w.manager, hospitals=[self.w.h2], slug="h2-only", prefix="HT")
        hidden = enrol(coordinator=self.w.coord2, trial=other, hospital=self.w.h2)
        with self.assertRaises(UnknownAuditObject):
            audit_events_filtered(self.w.monitor, AuditFilters(objects={"subject": hidden.pseudonym}))
        with self.assertRaises(UnknownAuditObject):
            audit_events_filtered(self.w.monitor, AuditFilters(objects={"case": "nonsense"}))

    def test_labels_name_people_subjects_and_cases_and_link_them(self):
        events = audit_label(self.w.monitor, list(audit_events_filtered(self.w.monitor, AuditFilters())))
        by_object = {e.object_id: e for e in events}
        subject_event = by_object[str(self.w.subject2.pk)]
        self.assertEqual(subject_event.object_link.label, self.w.subject2.pseudonym)
        self.assertEqual(subject_event.object_link.url, f"/trials/dr-trial/subjects/{self.w.subject2.pseudonym}/")
        self.assertEqual(subject_event.actor_label, f"{self.w.coord2.full_name} (coord2@visus.example)")
        case_event = by_object[str(self.w.case1.pk)]
        self.assertEqual(case_event.object_link.label, f"{self.w.subject1.pseudonym} OD day 0")
        self.assertEqual(case_event.object_link.url, f"/trials/cases/{self.w.case1.pk}/")


class AuditTrailPageTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.client.force_login(self.w.monitor)
        self.url = reverse("audit:event-list")

    def test_the_page_shows_labels_and_links_not_keys(self):
        page = self.client.get(self.url)
        self.assertEqual(page.status_code, 200)
        body = page.content.decode()
        self.assertIn(f'href="/trials/cases/{self.w.case1.pk}/"', body)
        self.assertIn(f">{self.w.subject1.pseudonym} OD day 0</a>", body)
        self.assertIn(self.w.coord1.full_name, body)
        self.assertNotIn(f">{self.w.case1.pk}<", body)

    def test_filters_apply_and_keep_across_pages(self):
        page = self.client.get(self.url, {"subject": self.w.subject2.pseudonym, "action": "subject.enroll"})
        self.assertContains(page, "1 event matches the filters.")
        self.assertContains(page, f">{self.w.subject2.pseudonym}</a>")
        self.assertNotContains(page, f">{self.w.subject1.pseudonym} OD day 0</a>")
        self.assertContains(page, 'aria-describedby="id_subject_helptext"')
        self.assertContains(page, 'id="id_subject_helptext"')

    def test_bad_filters_say_what_is_wrong_and_show_nothing(self):
        page = self.client.get(self.url, {"subject": "NOPE-0001"})
        self.assertContains(page, "No subject &#x27;NOPE-0001&#x27; in the trails you may review.")
        self.assertContains(page, "0 events")
        page = self.client.get(self.url, {"date_from": "2026-02-02", "date_to": "2026-02-01"})
        self.assertContains(page, "The end date is before the start date.")

    def test_the_page_runs_the_same_number_of_queries_however_many_events_and_objects_it_shows(self):
        self.client.get(self.url)
        with CaptureQueriesContext(connection) as few:
            self.assertEqual(self.client.get(self.url).status_code, 200)
        for n in range(8):
            subject = enrol(coordinator=self.w.coord2, trial=self.w.trial, hospital=self.w.h2)
            case_create(actor=self.w.coord2, subject=subject, laterality="OD", visit_day=n)
        with CaptureQueriesContext(connection) as many:
            page = self.client.get(self.url)
        self.assertContains(page, "DR01-H02-0009 OD day 7")
        self.assertEqual(len(many), len(few), [q["sql"][:120] for q in many.captured_queries])

    def test_readers_and_coordinators_are_refused(self):
        for user in (self.w.reader, self.w.coord1):
            self.client.force_login(user)
            self.assertEqual(self.client.get(self.url).status_code, 403)
            self.assertEqual(self.client.get(reverse("audit:event-export")).status_code, 403)


class AuditExportTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.client.force_login(self.w.monitor)

    def export(self, **params):
        response = self.client.get(reverse("audit:event-export"), params)
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.streaming)
        self.assertEqual(response["Content-Type"], "text/csv; charset=utf-8")
        return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))

    def test_the_export_holds_the_filtered_events_with_labels_and_is_audited(self):
        rows = self.export(subject=self.w.subject1.pseudonym)
        header, body = rows[0], rows[1:]
        self.assertEqual(header[:5], ["seq", "when_utc", "person", "person_email", "action"])
        objects = {row[6] for row in body}
        self.assertEqual(objects, {self.w.subject1.pseudonym, f"{self.w.subject1.pseudonym} OD day 0"})
        event = AuditEvent.objects.get(action="audit_trail.export")
        self.assertEqual(event.actor, self.w.monitor)
        self.assertEqual(event.changes["filters"], [None, {"subject": self.w.subject1.pseudonym}])
        self.assertEqual(event.changes["events"], [None, len(body)])
        self.assertEqual(event.hospital_code, "H01")

    def test_the_export_is_scoped_like_the_page(self):
        other = make_trial(manager=self.w.manager, hospitals=[self.w.h2], slug="h2-only", prefix="HT")
        hidden = enrol(coordinator=self.w.coord2, trial=other, hospital=self.w.h2)
        text = str(self.export())
        self.assertIn(self.w.subject2.pseudonym, text)
        self.assertNotIn(hidden.pseudonym, text)
        self.assertNotIn("h2-only", text)

    def test_a_formula_in_a_value_is_not_run_by_a_spreadsheet(self):
        subject_withdraw(actor=self.w.coord1, subject=self.w.subject1, reason="=HYPERLINK(1)")
        rows = self.export(action="subject.withdraw")
        self.assertEqual(rows[1][-1], "'=HYPERLINK(1)")

    def test_an_invalid_filter_exports_nothing_and_records_nothing(self):
        response = self.client.get(reverse("audit:event-export"), {"subject": "NOPE"})
        self.assertEqual(response.status_code, 400)
        self.assertFalse(AuditEvent.objects.filter(action="audit_trail.export").exists())
