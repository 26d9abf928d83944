"""The per-site completeness grid (issue 10, item 7): subjects by expected modalities and AI status, for the
trial's monitors and managers, in a constant number of queries."""

from __future__ import annotations

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from diagnosis.models import InferenceJob
from platform_core.accounts.models import Membership, Role
from tests.support import image_factories
from tests.support.factories import TrialWorld, enrol
from tests.support.registry import register_small_models
from tests.support.storage import delete_stored_models_and_case_files
from tests.support.uploads import vf_csv
from trials.file_services import case_file_upload
from trials.monitoring import completeness_grid
from trials.query_services import data_query_raise
from trials.services import case_create


class CompletenessGridTests(TestCase):
    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.addCleanup(delete_stored_models_and_case_files)
        self.dr, _ = register_small_models()
        self.url = reverse("trials:monitoring", args=["dr-trial"])

    def fundus(self, case, size=300):
        coord = self.w.coord1 if case.subject.site.hospital == self.w.h1 else self.w.coord2
        return case_file_upload(actor=coord, case=case, data=image_factories.plain_png(size, size)).case_file

    def test_cells_count_cases_with_each_modality_and_the_ai_status(self):
        self.fundus(self.w.case1)
        case_file_upload(actor=self.w.coord1, case=self.w.case1, data=vf_csv())
        second = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=0)
        self.fundus(second, 320)
        InferenceJob.objects.create(case=self.w.case1, model_version=self.dr, status="succeeded")
        InferenceJob.objects.create(case=second, model_version=self.dr, status="failed")
        data_query_raise(actor=self.w.monitor, case=second, text="Blurred?")
        grid = completeness_grid(user=self.w.monitor, trial=self.w.trial)
        self.assertEqual([label for _, label in grid.modalities], ["Fundus photograph", "Visual field"])
        rows = {row.subject.pseudonym: row for row in grid.rows}
        one, two = rows[self.w.subject1.pseudonym], rows[self.w.subject2.pseudonym]
        self.assertEqual(one.cases, 2)
        self.assertEqual(
            [(c.done, c.expected, c.state) for c in one.modalities], [(2, 2, "complete"), (1, 2, "partial")]
        )
        self.assertEqual((one.ai.done, one.ai_failed, one.ai.state), (1, 1, "partial"))
        self.assertEqual(one.open_queries, 1)
        self.assertEqual([c.state for c in two.modalities], ["missing", "missing"])

    def test_a_site_filter_shows_that_sites_subjects_only(self):
        self.client.force_login(self.w.monitor)
        page = self.client.get(self.url, {"site": "H02"})
        self.assertContains(page, self.w.subject2.pseudonym)
        self.assertNotContains(page, self.w.subject1.pseudonym)
        self.assertEqual(self.client.get(self.url, {"site": "H99"}).status_code, 404)

    def test_the_page_shows_labels_and_states_to_monitors_and_managers_only(self):
        self.fundus(self.w.case1)
        for user in (self.w.monitor, self.w.manager):
            self.client.force_login(user)
            page = self.client.get(self.url)
            self.assertContains(page, '<th scope="col">Visual field</th>', html=False)
            self.assertContains(page, 'data-state="complete"')
        for user in (self.w.coord1, self.w.reader, self.w.statistician):
            self.client.force_login(user)
            self.assertEqual(self.client.get(self.url).status_code, 403, user.email)

    def test_a_monitor_who_reads_in_the_trial_sees_no_ai_status(self):
        InferenceJob.objects.create(case=self.w.case1, model_version=self.dr, status="succeeded")
        Membership.objects.create(user=self.w.monitor, hospital=self.w.h1, role=Role.READER)
        grid = completeness_grid(user=self.w.monitor, trial=self.w.trial)
        self.assertTrue(grid.ai_blinded)
        self.assertTrue(all(row.ai is None for row in grid.rows))

    def test_the_grid_runs_the_same_number_of_queries_however_many_subjects(self):
        self.client.force_login(self.w.monitor)
        self.client.get(self.url)
        with CaptureQueriesContext(connection) as few:
            self.client.get(self.url)
        for n in range(6):
            subject = enrol(coordinator=self.w.coord2, trial=self.w.trial, hospital=self.w.h2)
            case = case_create(actor=self.w.coord2, subject=subject, laterality="OD", visit_day=n)
            self.fundus(case, 300 + n)
            InferenceJob.objects.create(case=case, model_version=self.dr, status="succeeded")
        with CaptureQueriesContext(connection) as many:
            page = self.client.get(self.url)
        self.assertContains(page, "DR01-H02-0007")
        self.assertEqual(len(many), len(few), [q["sql"][:100] for q in many.captured_queries])
