"""Faults around storing a file (issue 13): the S3 server stopped mid-trial, and the same file uploaded eight times
at once. Each ends with a clear answer and no row without its file."""

from __future__ import annotations

import threading

from django.core.files.storage import default_storage
from django.db import connection
from django.test import TestCase, TransactionTestCase, override_settings, tag
from django.urls import reverse
from rest_framework.test import APIClient

from platform_core.errors import ApplicationError
from tests.support import require_postgresql
from tests.support.factories import TrialWorld
from tests.support.seaweed import PrivateSeaweed
from tests.support.storage import stored_names
from tests.support.uploads import vf_csv
from trials.file_services import case_file_upload
from trials.models import CaseFile


@tag("s3")
class S3StoppedTests(TestCase):
    """SeaweedFS (a private instance, with an identity file) stopped: uploads answer 503 and store nothing; started
    again on the same data, uploads work and the files stored before are still there."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.weed = PrivateSeaweed()
        cls.addClassCleanup(cls.weed.remove)
        cls.weed.start()

    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        storages = {
            "default": self.weed.storage_settings(),
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        override = override_settings(STORAGES=storages)
        override.enable()
        self.addCleanup(override.disable)

    def upload_api(self, data: bytes):
        client = APIClient()
        client.force_authenticate(self.w.coord1)
        url = reverse("api:trials:case-file-upload", args=[self.w.case1.pk])
        return client.post(url, {"file": _named(data)}, format="multipart")

    def test_uploads_fail_cleanly_while_s3_is_down_and_work_again_after(self):
        first = case_file_upload(actor=self.w.coord1, case=self.w.case1, data=vf_csv("OD")).case_file
        self.assertTrue(default_storage.exists(first.content.name))
        self.weed.stop()
        try:
            with self.assertLogs("platform_core.storage", "ERROR"):
                with self.assertRaises(ApplicationError) as caught:
                    case_file_upload(actor=self.w.coord1, case=self.w.case1, data=vf_csv("OD", sens=25.0))
            self.assertEqual((caught.exception.status, caught.exception.code), (503, "storage_unavailable"))
            self.assertIn("nothing was stored", caught.exception.message)
            with self.assertLogs("platform_core.storage", "ERROR"):
                response = self.upload_api(vf_csv("OD", sens=24.0))
            self.assertEqual(response.status_code, 503, response.content)
            self.assertEqual(response.json()["error"]["code"], "storage_unavailable")
            self.assertEqual(CaseFile.objects.filter(case=self.w.case1).count(), 1)  # no row without its file
        finally:
            self.weed.start()
        second = case_file_upload(actor=self.w.coord1, case=self.w.case1, data=vf_csv("OD", sens=25.0)).case_file
        self.assertEqual(CaseFile.objects.filter(case=self.w.case1).count(), 2)
        with default_storage.open(first.content.name) as handle:
            self.assertTrue(handle.read())
        self.assertTrue(default_storage.exists(second.content.name))


def _named(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("field.csv", data, content_type="text/csv")


class SameFileRaceTests(TransactionTestCase):
    """The same file uploaded eight times at once: one accepted, seven duplicates (never a 400), one row, and no
    object left behind by the seven."""

    def setUp(self):
        require_postgresql()
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.before = stored_names()

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

    def test_eight_identical_uploads_at_once(self):
        data = vf_csv("OD")
        barrier = threading.Barrier(8)
        outcomes: list[object] = [None] * 8

        def upload(i: int) -> None:
            try:
                barrier.wait(timeout=30)
                outcomes[i] = case_file_upload(actor=self.w.coord1, case=self.w.case1, data=data).outcome
            except Exception as exc:
                outcomes[i] = exc
            finally:
                connection.close()

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        self.assertEqual(sorted(map(str, outcomes)), ["accepted"] + ["duplicate"] * 7, outcomes)
        self.assertEqual(CaseFile.objects.filter(case=self.w.case1).count(), 1)
        kept = CaseFile.objects.get(case=self.w.case1)
        names = {n for n in (kept.content.name, kept.preview.name, kept.thumbnail.name) if n}
        self.assertEqual(stored_names() - self.before, names)
