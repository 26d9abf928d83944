"""The HTML pages and admin lists run the same number of queries however many rows they show (no N+1).

Each test counts a page's queries, grows the rows it lists (subjects, cases, files, predictions, sites,
people, audit events), and asserts the same count again.
"""

from __future__ import annotations

from django.contrib import admin
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from diagnosis.models import FusionCalibration, InferenceJob, JobStatus, Prediction
from diagnosis.networks.fusion import FusionWeights
from platform_core.accounts.models import Role
from tests.support import image_factories
from tests.support.factories import HospitalFactory, TrialWorld, UserFactory, enrol, member
from tests.support.registry import register_fundus_glaucoma_model, register_small_models
from tests.support.storage import delete_stored_models_and_case_files
from tests.support.uploads import vf_csv
from trials.file_services import case_file_upload
from trials.models import Case, Subject
from trials.services import case_create, trial_site_add

# Ceilings: a page that needs more than this has grown a per-row query or a missing select_related.
MAX_PAGE_QUERIES = 25
MAX_ADMIN_LIST_QUERIES = 15


class PageQueryCountTests(TestCase):
    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.addCleanup(delete_stored_models_and_case_files)
        self.dr, self.vf = register_small_models()
        self.admin_user = UserFactory(email="root@visus.example", is_staff=True, is_superuser=True)

    def grow(self):
        """More of every row the pages list: subjects and cases at both sites, files and predictions on
        case 1, a third site and more people."""
        for _ in range(3):
            enrol(coordinator=self.w.coord1, trial=self.w.trial, hospital=self.w.h1)
            enrol(coordinator=self.w.coord2, trial=self.w.trial, hospital=self.w.h2)
        for subject in Subject.objects.filter(cases__isnull=True):
            coordinator = self.w.coord1 if subject.site.hospital == self.w.h1 else self.w.coord2
            case_create(actor=coordinator, subject=subject, laterality="OD", visit_day=0)
            case_create(actor=coordinator, subject=subject, laterality="OS", visit_day=0)
        self.upload_files(self.w.case1, count=3)
        self.predict(self.w.case1, [register_fundus_glaucoma_model()])  # a third model's prediction
        hospital = HospitalFactory(code="H03")
        trial_site_add(actor=self.w.manager, trial=self.w.trial, hospital=hospital, enrolment_target=5)
        for n in range(3):
            member(Role.COORDINATOR, hospital, email=f"extra{n}@visus.example")
        self.calibrate(count=3)

    def calibrate(self, count: int) -> None:
        """Fusion calibrations as ``fusion_calibration_fit`` leaves them, with both models and who fitted them."""
        for n in range(count):
            FusionCalibration.objects.create(
                trial=self.w.trial,
                fundus_model=self.dr,
                vf_model=self.vf,
                weights=FusionWeights(prior_probability=0.3).to_dict(),
                eyes=40 + n,
                positives=12,
                fitted_by=self.w.manager,
            )

    def upload_files(self, case: Case, count: int) -> None:
        for n in range(count):
            case_file_upload(actor=self.w.coord1, case=case, data=image_factories.plain_png(400 + n, 300))
        case_file_upload(actor=self.w.coord1, case=case, data=vf_csv("OD"))

    def predict(self, case: Case, models=None) -> None:
        """A finished job and prediction per model, as a worker leaves them (the worker has its own tests)."""
        for model in models or (self.dr, self.vf):
            job = InferenceJob.objects.create(case=case, model_version=model, status=JobStatus.SUCCEEDED)
            Prediction.objects.create(job=job, case=case, model_version=model, glaucoma_probability=0.3, runtime_ms=1)

    def count(self, user, url: str, ceiling: int) -> int:
        self.client.force_login(user)
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(url)
        self.assertEqual(response.status_code, 200, url)
        self.assertLessEqual(len(queries), ceiling, f"{url}: {len(queries)} queries")
        return len(queries)

    def assert_constant(self, views: list, ceiling: int) -> None:
        before = {(user.email, url): self.count(user, url, ceiling) for user, url in views}
        self.grow()
        for user, url in views:
            with self.subTest(url=url, user=user.email):
                self.assertEqual(self.count(user, url, ceiling), before[(user.email, url)])

    def test_trial_subject_list_and_case_pages(self):
        trial = self.w.trial.slug
        self.upload_files(self.w.case1, count=1)
        self.predict(self.w.case1)
        self.calibrate(count=1)  # the trial and case pages show the newest calibration
        case = reverse("trials:case-detail", args=[self.w.case1.pk])
        self.assert_constant(
            [
                (self.w.manager, reverse("trials:trial-detail", args=[trial])),
                (self.w.coord1, reverse("trials:trial-detail", args=[trial])),
                (self.w.monitor, reverse("trials:subject-list", args=[trial])),
                (self.w.coord1, reverse("trials:subject-list", args=[trial])),
                (self.w.coord1, case),  # files, jobs, predictions and the fused glaucoma probability
                (self.w.monitor, case),
            ],
            MAX_PAGE_QUERIES,
        )

    def test_every_admin_changelist(self):
        self.upload_files(self.w.case1, count=1)
        self.predict(self.w.case1)
        self.calibrate(count=1)
        lists = [
            reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            for model in admin.site._registry
        ]
        self.assertGreaterEqual(len(lists), 10)
        self.assert_constant([(self.admin_user, url) for url in lists], MAX_ADMIN_LIST_QUERIES)
