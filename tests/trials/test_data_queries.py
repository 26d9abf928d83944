"""Data queries (issue 10, item 7): a monitor raises, the site's coordinator answers, the monitor closes or
reopens; each step audited, refused for the wrong person or a double submit, visible on the case page and in the
trial's list, scoped to the coordinator's site and never shown to a trial's readers."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from platform_core.accounts.models import Membership, Role
from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from tests.support import image_factories
from tests.support.factories import TrialWorld, enrol, member
from tests.support.storage import delete_stored_models_and_case_files
from trials.file_services import case_file_upload
from trials.models import DataQuery, DataQueryNote
from trials.monitoring import data_queries_for
from trials.query_services import data_query_answer, data_query_close, data_query_raise, data_query_reopen
from trials.services import case_create


class DataQueryServiceTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()

    def raise_on_case2(self, text="Visit day does not match the source."):
        return data_query_raise(actor=self.w.monitor, case=self.w.case2, text=text)

    def test_raise_answer_close_reopen_each_step_is_audited_with_its_note(self):
        query = self.raise_on_case2()
        data_query_answer(actor=self.w.coord2, query=query, text="Corrected in the source: day 0.")
        data_query_close(actor=self.w.monitor, query=query, note="Verified.")
        data_query_reopen(actor=self.w.monitor, query=query, reason="Second eye also affected.")
        query.refresh_from_db()
        self.assertEqual(query.status, "open")
        self.assertEqual(list(query.notes.values_list("kind", flat=True)), ["raise", "answer", "close", "reopen"])
        events = list(AuditEvent.objects.filter(object_id=str(query.pk)).order_by("seq"))
        self.assertEqual(
            [e.action for e in events],
            ["data_query.raise", "data_query.answer", "data_query.close", "data_query.reopen"],
        )
        self.assertEqual(events[0].changes["text"], [None, "Visit day does not match the source."])
        self.assertEqual(events[0].changes["case"], [None, f"{self.w.subject2.pseudonym} OS day 0"])
        self.assertEqual(events[1].changes["status"], ["open", "answered"])
        self.assertEqual(events[1].changes["note"], [None, "Corrected in the source: day 0."])
        self.assertEqual(events[3].reason, "Second eye also affected.")
        self.assertEqual({(e.hospital_code, e.trial_ref) for e in events}, {("H02", "dr-trial")})

    def test_only_a_monitor_of_the_trial_raises_and_closes(self):
        for actor in (self.w.coord2, self.w.manager, self.w.reader, self.w.outsider):
            with self.assertRaises(ApplicationError, msg=actor.email):
                data_query_raise(actor=actor, case=self.w.case2, text="x")
        query = self.raise_on_case2()
        with self.assertRaises(ApplicationError):
            data_query_close(actor=self.w.coord2, query=query)
        self.assertEqual(DataQuery.objects.count(), 1)

    def test_a_monitor_who_reads_in_the_trial_cannot_raise(self):
        Membership.objects.create(user=self.w.monitor, hospital=self.w.h1, role=Role.READER)
        with self.assertRaises(ApplicationError):
            self.raise_on_case2()

    def test_only_the_sites_coordinator_answers(self):
        query = self.raise_on_case2()
        with self.assertRaisesMessage(ApplicationError, "Only a coordinator of this case's site may answer."):
            data_query_answer(actor=self.w.coord1, query=query, text="not mine")
        query.refresh_from_db()
        self.assertEqual(query.status, "open")

    def test_double_submits_and_empty_text_are_refused_and_change_nothing(self):
        query = self.raise_on_case2()
        with self.assertRaisesMessage(ApplicationError, "already open"):
            self.raise_on_case2()
        with self.assertRaises(ValidationError):
            data_query_raise(actor=self.w.monitor, case=self.w.case2, text="   ")
        with self.assertRaises(ValidationError):
            data_query_answer(actor=self.w.coord2, query=query, text="")
        data_query_answer(actor=self.w.coord2, query=query, text="done")
        with self.assertRaisesMessage(ApplicationError, "nothing to answer"):
            data_query_answer(actor=self.w.coord2, query=query, text="done")
        data_query_close(actor=self.w.monitor, query=query)
        with self.assertRaisesMessage(ApplicationError, "already closed"):
            data_query_close(actor=self.w.monitor, query=query)
        with self.assertRaises(ValidationError):
            data_query_reopen(actor=self.w.monitor, query=query, reason=" ")
        self.assertEqual(DataQuery.objects.count(), 1)
        self.assertEqual(DataQueryNote.objects.count(), 3)
        self.assertEqual(AuditEvent.objects.filter(action__startswith="data_query.").count(), 3)

    def test_a_query_on_a_file_of_another_case_is_refused(self):
        self.addCleanup(delete_stored_models_and_case_files)
        other_file = case_file_upload(
            actor=self.w.coord1, case=self.w.case1, data=image_factories.plain_png(300, 300)
        ).case_file
        with self.assertRaises(ValidationError):
            data_query_raise(actor=self.w.monitor, case=self.w.case2, text="x", case_file=other_file)
        self.assertFalse(DataQuery.objects.exists())
        query = data_query_raise(actor=self.w.monitor, case=self.w.case1, text="Blurred?", case_file=other_file)
        event = AuditEvent.objects.get(action="data_query.raise", object_id=str(query.pk))
        self.assertEqual(event.changes["case_file"], [None, other_file.sha256])

    def test_scoping_coordinators_see_their_site_readers_never(self):
        q2 = self.raise_on_case2()
        q1 = data_query_raise(actor=self.w.monitor, case=self.w.case1, text="Consent version?")
        self.assertEqual(set(data_queries_for(self.w.monitor)), {q1, q2})
        self.assertEqual(set(data_queries_for(self.w.manager)), {q1, q2})
        self.assertEqual(list(data_queries_for(self.w.coord1)), [q1])
        self.assertEqual(list(data_queries_for(self.w.coord2)), [q2])
        self.assertFalse(data_queries_for(self.w.reader).exists())
        self.assertFalse(data_queries_for(self.w.statistician).exists())
        Membership.objects.create(user=self.w.coord1, hospital=self.w.h1, role=Role.READER)
        self.assertFalse(data_queries_for(self.w.coord1).exists())


class DataQueryPageTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()

    def test_the_case_page_shows_the_query_thread_and_the_forms_for_each_role(self):
        query = data_query_raise(actor=self.w.monitor, case=self.w.case2, text="Which camera?")
        case_url = reverse("trials:case-detail", args=[self.w.case2.pk])
        self.client.force_login(self.w.monitor)
        page = self.client.get(case_url)
        self.assertContains(page, "Which camera?")
        self.assertContains(page, "Raise a query")
        self.assertContains(page, "Close query")
        self.assertNotContains(page, "Send answer")
        self.assertContains(page, 'data-testid="case-audit-link"')
        self.client.force_login(self.w.coord2)
        page = self.client.get(case_url)
        self.assertContains(page, "Send answer")
        self.assertNotContains(page, "Raise a query")
        answer = self.client.post(reverse("trials:query-step", args=[query.pk, "answer"]), {"text": "Topcon"})
        self.assertRedirects(answer, case_url)
        self.assertContains(self.client.get(case_url), "Topcon")
        query.refresh_from_db()
        self.assertEqual(query.status, "answered")

    def test_raising_through_the_page_and_a_refused_step_show_their_messages(self):
        self.client.force_login(self.w.monitor)
        url = reverse("trials:query-raise", args=[self.w.case1.pk])
        page = self.client.post(url, {"text": "Check eye"}, follow=True)
        self.assertContains(page, "Query raised")
        page = self.client.post(url, {"text": "Check eye"})
        self.assertContains(page, "This query is already open on this case.", status_code=400)
        page = self.client.post(url, {"text": ""})
        # The case page again, the form bound: the error summary names the field and links to it.
        self.assertContains(
            page, '<a href="#id_text">Question for the site</a>: This field is required.', status_code=400, html=False
        )
        self.assertContains(page, 'data-testid="query-raise"', status_code=400)
        self.assertEqual(DataQuery.objects.count(), 1)
        query = DataQuery.objects.get()
        page = self.client.post(reverse("trials:query-step", args=[query.pk, "reopen"]), {"text": "x"}, follow=True)
        self.assertContains(page, "This query is already open.")

    def test_the_other_sites_coordinator_cannot_reach_or_answer_a_query(self):
        query = data_query_raise(actor=self.w.monitor, case=self.w.case2, text="x")
        self.client.force_login(self.w.coord1)
        response = self.client.post(reverse("trials:query-step", args=[query.pk, "answer"]), {"text": "y"})
        self.assertEqual(response.status_code, 404)
        page = self.client.get(reverse("trials:query-list", args=["dr-trial"]))
        self.assertNotContains(page, self.w.subject2.pseudonym)
        query.refresh_from_db()
        self.assertEqual(query.status, "open")

    def test_readers_get_no_query_pages(self):
        self.client.force_login(self.w.reader)
        self.assertEqual(self.client.get(reverse("trials:query-list", args=["dr-trial"])).status_code, 403)
        query = data_query_raise(actor=self.w.monitor, case=self.w.case1, text="x")
        response = self.client.post(reverse("trials:query-step", args=[query.pk, "close"]), {"text": ""})
        self.assertEqual(response.status_code, 403)

    def test_the_trial_list_filters_by_status_and_pins_its_queries(self):
        url = reverse("trials:query-list", args=["dr-trial"])
        first = data_query_raise(actor=self.w.monitor, case=self.w.case1, text="Open one")
        closed = data_query_raise(actor=self.w.monitor, case=self.w.case2, text="Closed one")
        data_query_close(actor=self.w.monitor, query=closed)
        self.client.force_login(self.w.monitor)
        page = self.client.get(url)
        self.assertContains(page, "Open one")
        self.assertNotContains(page, "Closed one")
        self.assertContains(self.client.get(url, {"status": "closed"}), "Closed one")
        with CaptureQueriesContext(connection) as few:
            self.client.get(url)
        for n in range(5):
            subject = enrol(coordinator=self.w.coord2, trial=self.w.trial, hospital=self.w.h2)
            case = case_create(actor=self.w.coord2, subject=subject, laterality="OD", visit_day=n)
            query = data_query_raise(actor=self.w.monitor, case=case, text=f"q{n}")
            data_query_answer(actor=self.w.coord2, query=query, text="a")
        with CaptureQueriesContext(connection) as many:
            page = self.client.get(url)
        self.assertContains(page, "q4")
        self.assertEqual(len(many), len(few))
        self.assertTrue(first)

    def test_a_manager_at_another_hospital_of_the_trial_sees_all_queries(self):
        manager2 = member(Role.TRIAL_MANAGER, self.w.h2, email="m2@visus.example")
        data_query_raise(actor=self.w.monitor, case=self.w.case1, text="H01 query")
        self.client.force_login(manager2)
        self.assertContains(self.client.get(reverse("trials:query-list", args=["dr-trial"])), "H01 query")


class TrialPageQueryCountTests(TestCase):
    def test_the_trial_page_tells_each_coordinator_their_sites_unresolved_queries(self):
        w = TrialWorld()
        data_query_raise(actor=w.monitor, case=w.case2, text="x")
        data_query_raise(actor=w.monitor, case=w.case2, text="y")
        url = reverse("trials:trial-detail", args=["dr-trial"])
        self.client.force_login(w.coord2)
        self.assertContains(self.client.get(url), "Data queries (2 unresolved)")
        self.client.force_login(w.coord1)
        page = self.client.get(url)
        self.assertContains(page, 'data-testid="queries-link">Data queries</a>')
        self.client.force_login(w.monitor)
        self.assertContains(self.client.get(url), "Data queries (2 unresolved)")
