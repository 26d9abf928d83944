"""Uploads end to end (API, page, services): accepted, duplicate, refused with nothing left behind."""

from __future__ import annotations

import io
from unittest import mock

from django.core.files.storage import default_storage
from django.test import override_settings
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from platform_core.audit.models import AuditEvent
from tests.support import dicom_factories, image_factories
from tests.support.storage import fetch, stored_names
from tests.support.uploads import UploadTestCase, vf_csv
from trials.models import CaseFile, VisualFieldResult
from trials.services import case_create, case_set_status


class AcceptedUploadTests(UploadTestCase):
    def test_jpeg_is_stripped_stored_and_previewed(self):
        response = self.upload(image_factories.jpeg_with_metadata(orientation=6), "CANARY_patient.jpg")
        self.assertEqual(response.status_code, 201, response.content)
        body = response.json()
        self.assertEqual(body["outcome"], "accepted")
        self.assertEqual((body["width"], body["height"]), (300, 400))  # EXIF orientation 6 applied
        self.assertIn("exif", body["deid_report"]["stripped"])
        case_file = CaseFile.objects.get(pk=body["id"])
        with default_storage.open(case_file.content.name) as handle:
            stored = handle.read()
        for canary in image_factories.CANARY_BYTES:
            self.assertNotIn(canary, stored)
        self.assertNotIn("CANARY", case_file.content.name)
        self.client.force_login(self.w.coord1)
        self.assertEqual(Image.open(io.BytesIO(fetch(self.client.get(body["preview_url"])))).format, "JPEG")
        event = AuditEvent.objects.get(action="case_file.upload")
        self.assertEqual(event.changes["sha256"], [None, case_file.sha256])
        self.assertEqual(event.hospital_code, "H01")

    def test_same_file_twice_is_a_duplicate_not_a_second_copy(self):
        data = image_factories.plain_png(400, 400)
        self.assertEqual(self.upload(data).status_code, 201)
        objects = stored_names()
        response = self.upload(data)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["outcome"], "duplicate")
        self.assertEqual(CaseFile.objects.count(), 1)
        self.assertEqual(stored_names(), objects)

    def test_dicom_photograph_is_deidentified_and_previewed(self):
        response = self.upload(dicom_factories.ophthalmic_photograph(), "scan.dcm")
        self.assertEqual(response.status_code, 201, response.content)
        body = response.json()
        self.assertEqual(body["modality"], "fundus")
        self.assertEqual(body["file_format"], "dicom")
        self.assertTrue(body["deid_report"]["actions"])
        self.assertIsNotNone(body["thumbnail_url"])

    def test_visual_field_csv_is_analysed_with_the_trial_cut_offs(self):
        response = self.upload(vf_csv(fp=20), "vf.csv")
        self.assertEqual(response.status_code, 201, response.content)
        result = VisualFieldResult.objects.get()
        self.assertFalse(result.reliable)
        self.assertTrue(any("false_positives" in r for r in result.reliability_reasons))
        self.assertEqual(result.indices_source["md"], "computed")
        self.assertIsNone(result.sensitivities[25])
        self.assertTrue(result.pd_plot.name.endswith(".png"))
        self.assertEqual(response.json()["visual_field"]["reliable"], False)

    def test_visual_field_within_cut_offs_is_reliable(self):
        self.upload(vf_csv(fp=3))
        self.assertTrue(VisualFieldResult.objects.get().reliable)


class RefusedUploadTests(UploadTestCase):
    def assert_refused(self, data: bytes, code: str, message: str, *, status=400, url=None):
        before = (CaseFile.objects.count(), AuditEvent.objects.count(), stored_names())
        response = self.upload(data, url=url)
        self.assertEqual(response.status_code, status, response.content)
        error = response.json()["error"]
        self.assertEqual(error["code"], code)
        self.assertIn(message, error["message"])
        self.assertEqual(before, (CaseFile.objects.count(), AuditEvent.objects.count(), stored_names()))
        return error

    def test_each_bad_file_gets_a_clear_error_and_nothing_is_kept(self):
        jpeg = image_factories.jpeg_with_metadata()
        cases = [
            (b"", "empty", "empty"),
            (jpeg[: len(jpeg) // 2], "truncated", "truncated"),
            (b"%PDF-1.7\n" + b"x" * 2000 + b"\n%%EOF\n", "pdf_printout", "identifiers"),
            (b"just some text that is not an image", "not_an_image", "not an image or DICOM file"),
            (image_factories.plain_png(100, 100), "image_too_small", "too small"),
            (dicom_factories.ophthalmic_photograph(rows=16, columns=16), "image_too_small", "16 x 16 px"),
            (image_factories.png_bomb(), "image_too_large", "decompression bomb"),
            (dicom_factories.encapsulated_pdf(), "pdf_printout", "identifiers"),
            (dicom_factories.huge_header_image(), "too_many_pixels", "too large to process"),
            (dicom_factories.oct_volume(), "wrong_eye", "left eye (OS)"),
        ]
        for data, code, message in cases:
            with self.subTest(code=code):
                self.assert_refused(data, code, message)

    def test_request_without_a_file_gets_a_clear_error(self):
        response = self.api.post(self.url, {"other": "x"}, format="multipart")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json()["error"]["code"], "no_file")
        self.assertIn("multipart field 'file'", response.json()["error"]["message"])

    def test_upload_to_a_case_that_is_not_open_is_refused(self):
        self.assertEqual(self.upload(vf_csv("OD")).status_code, 201)  # an empty case cannot be completed
        case_set_status(actor=self.w.coord1, case=self.w.case1, status="complete")
        self.assert_refused(image_factories.plain_png(400, 400), "case_not_open", "reopen it")

    @override_settings(VISUS_MAX_UPLOAD_MB=1)
    def test_files_over_the_size_limit_are_refused(self):
        big = image_factories.plain_png(400, 400) + b"\0" * (2 * 1024 * 1024)
        self.assert_refused(big, "too_large", "upload limit of 1 MB", status=413)

    def test_modality_the_trial_does_not_collect_is_refused(self):
        self.w.trial.modalities = ["fundus"]
        self.w.trial.save()
        os_case = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=0)
        self.assert_refused(
            dicom_factories.oct_volume(),
            "wrong_modality",
            "collects only fundus photographs",
            url=reverse("api:trials:case-file-upload", args=[os_case.pk]),
        )

    def test_storage_failure_leaves_no_partial_objects_or_rows(self):
        from platform_core import storage

        real_save = storage.save_private
        calls = {"n": 0}

        def flaky(prefix, data, extension, storage=default_storage):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("storage unavailable")
            return real_save(prefix, data, extension, storage)

        before = stored_names()
        with mock.patch("trials.file_services.save_private", side_effect=flaky), self.assertRaises(OSError):
            from trials.file_services import case_file_upload

            case_file_upload(actor=self.w.coord1, case=self.w.case1, data=image_factories.plain_png(400, 400))
        self.assertEqual(stored_names(), before)
        self.assertEqual(CaseFile.objects.count(), 0)

    def test_database_failure_after_storing_deletes_the_objects(self):
        before = stored_names()
        with mock.patch("platform_core.audit.services.audit_record", side_effect=RuntimeError("db down")):
            from trials.file_services import case_file_upload

            with self.assertRaises(RuntimeError):
                case_file_upload(actor=self.w.coord1, case=self.w.case1, data=image_factories.plain_png(400, 400))
        self.assertEqual(stored_names(), before)
        self.assertEqual(CaseFile.objects.count(), 0)


class UploadPermissionTests(UploadTestCase):
    def test_foreign_site_coordinator_can_neither_upload_nor_see_files(self):
        self.upload(image_factories.plain_png(400, 400))
        case_file = CaseFile.objects.get()
        other = APIClient()
        other.force_authenticate(self.w.coord2)
        self.assertEqual(self.upload(image_factories.plain_png(401, 400), client=other).status_code, 404)
        self.assertEqual(other.get(reverse("api:trials:case-file-list", args=[self.w.case1.pk])).status_code, 404)
        self.client.force_login(self.w.coord2)
        for variant in ("content", "preview", "thumbnail"):
            self.assertEqual(
                self.client.get(reverse("trials:case-file", args=[case_file.pk, variant])).status_code, 404
            )

    def test_readers_and_monitors_cannot_upload(self):
        for user in (self.w.reader, self.w.monitor):
            client = APIClient()
            client.force_authenticate(user)
            self.assertEqual(self.upload(image_factories.plain_png(400, 400), client=client).status_code, 403)

    def test_monitor_can_list_files_with_constant_queries(self):
        self.upload(image_factories.plain_png(400, 400))
        client = APIClient()
        client.force_authenticate(self.w.monitor)
        url = reverse("api:trials:case-file-list", args=[self.w.case1.pk])
        with self.assertNumQueries(4):
            response = client.get(url)
        self.assertEqual(response.json()["count"], 1)
        self.upload(image_factories.plain_png(402, 400))
        self.upload(vf_csv())
        with self.assertNumQueries(4):
            response = client.get(url)
        self.assertEqual(response.json()["count"], 3)


class CasePageUploadTests(UploadTestCase):
    def test_case_page_shows_the_upload_zone_and_files(self):
        self.upload(image_factories.plain_png(400, 400))
        self.client.force_login(self.w.coord1)
        response = self.client.get(reverse("trials:case-detail", args=[self.w.case1.pk]))
        self.assertContains(response, 'data-testid="dropzone"')
        self.assertContains(response, 'data-testid="case-file"')
        self.assertContains(response, "/static/js/uploads.js")

    def test_statistician_sees_files_but_no_upload_zone(self):
        self.client.force_login(self.w.statistician)
        response = self.client.get(reverse("trials:case-detail", args=[self.w.case1.pk]))
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, 'data-testid="dropzone"')


class PresignedFileAccessTests(UploadTestCase):
    """On S3, file views hand out short-lived presigned URLs; tampered or expired ones are refused."""

    def test_presigned_file_urls_expire_and_resist_tampering(self):
        from platform_core.storage import is_s3
        from tests.support import require_service

        require_service("S3 (SeaweedFS) as default storage", is_s3(default_storage), "make test sets AWS_* for this")
        import time
        import urllib.error
        import urllib.parse
        import urllib.request

        self.upload(image_factories.plain_png(400, 400))
        case_file = CaseFile.objects.get()
        self.client.force_login(self.w.coord1)
        url = reverse("trials:case-file", args=[case_file.pk, "content"])
        with override_settings(VISUS_PRESIGNED_URL_SECONDS=2):
            response = self.client.get(url)
        self.assertEqual(response.status_code, 302)
        location = response["Location"]

        def status(u):
            try:
                with urllib.request.urlopen(u, timeout=10) as handle:  # noqa: S310 - loopback S3
                    return handle.status
            except urllib.error.HTTPError as exc:
                return exc.code

        self.assertEqual(status(location), 200)
        parts = urllib.parse.urlsplit(location)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query["X-Amz-Signature"] = query["X-Amz-Signature"][::-1]
        self.assertEqual(status(urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))), 403)
        time.sleep(3.5)
        self.assertEqual(status(location), 403)


class DeidentificationReportPageTests(UploadTestCase):
    def test_case_page_shows_each_files_report_without_values(self):
        from tests.support import dicom_factories

        self.upload(dicom_factories.ophthalmic_photograph())
        self.upload(image_factories.jpeg_with_metadata(orientation=6))
        self.client.force_login(self.w.coord1)
        page = self.client.get(reverse("trials:case-detail", args=[self.w.case1.pk]))
        self.assertContains(page, "De-identification report", count=2)
        self.assertContains(page, "PatientName")
        self.assertContains(page, "Rebuilt from pixels only")
        self.assertNotContains(page, "CANARY")
