"""What a hostile review of the streamed uploads, the size limits and the 503 page found, each proven fixed:

- any POST's multipart body was spooled to disk without a ceiling before its view ran (the CSRF check parses it, for
  strangers too), so a stranger could fill the temporary disk;
- every ``OperationalError`` became a 503 "database unavailable", a missing table or a statement timeout included;
- the admin's trial forms answered 500 to a JSON number or true in a list field;
- a DICOM file with a TIFF header in its preamble was refused through the API and taken through the import path.
"""

from __future__ import annotations

import sqlite3
import tempfile
from unittest import mock

import psycopg2
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import StopUpload
from django.db import InterfaceError, OperationalError, connection, transaction
from django.test import RequestFactory, SimpleTestCase, TestCase, override_settings

from platform_core.errorpages import database_unavailable
from platform_core.upload_handlers import UnnamedTemporaryFileUploadHandler
from tests.support import dicom_factories
from tests.support.uploads import hostile_context as context
from trials.admin import TrialAddForm
from trials.uploads.errors import UploadRejected
from trials.uploads.pipeline import process_upload

MB = 1024 * 1024


@override_settings(VISUS_MAX_UPLOAD_MB=1)
class UploadCeilingTests(SimpleTestCase):
    def test_a_strangers_post_over_the_ceiling_is_not_spooled_at_all(self):
        request = RequestFactory().post(
            "/accounts/login/", {"username": "x", "file": SimpleUploadedFile("big.bin", b"\0" * (3 * MB))}
        )
        with mock.patch("platform_core.upload_handlers.tempfile.TemporaryFile", wraps=tempfile.TemporaryFile) as spool:
            files = request.FILES
        self.assertEqual(len(files), 0)
        spool.assert_not_called()

    def test_a_body_that_grows_past_the_ceiling_stops_being_read_and_its_file_is_freed(self):
        handler = UnnamedTemporaryFileUploadHandler(RequestFactory().post("/"))
        handler.handle_raw_input(None, {}, MB // 2, b"b")  # a body that said it was small
        handler.new_file("file", "a.bin", "application/octet-stream", None)
        spooled = handler.file
        chunk = b"\0" * (64 * 1024)
        with self.assertRaises(StopUpload):
            for start in range(0, 2 * MB, len(chunk)):
                handler.receive_data_chunk(chunk, start)
        self.assertTrue(spooled.closed)
        self.assertLessEqual(handler.spooled, MB + len(chunk))

    def test_an_upload_under_the_ceiling_is_spooled_as_before(self):
        request = RequestFactory().post("/", {"file": SimpleUploadedFile("ok.bin", b"\1" * (MB - 4096))})
        with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=64 * 1024):
            uploaded = request.FILES["file"]
        self.assertEqual(uploaded.size, MB - 4096)
        self.assertEqual(uploaded.read(3), b"\1\1\1")


class DatabaseUnavailableTests(TestCase):
    def wrapped(self, cause: BaseException, kind: type[Exception] = OperationalError) -> Exception:
        error = kind(str(cause))
        error.__cause__ = cause
        return error

    def test_a_lost_or_refused_connection_is_unavailable(self):
        self.assertTrue(database_unavailable(self.wrapped(psycopg2.OperationalError("server closed the connection"))))
        self.assertTrue(database_unavailable(self.wrapped(psycopg2.InterfaceError("closed"), InterfaceError)))

    def test_a_statement_timeout_on_postgresql_is_an_error_of_the_request(self):
        with self.assertRaises(OperationalError) as caught, transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 1")
            cursor.execute("SELECT pg_sleep(1)")
        self.assertEqual(caught.exception.__cause__.pgcode, "57014")
        self.assertFalse(database_unavailable(caught.exception))

    def test_server_shutdown_codes_are_unavailable_and_a_deadlock_is_not(self):
        fake = type("PgError", (Exception,), {})
        shutdown, deadlock = fake("terminating connection"), fake("deadlock detected")
        shutdown.pgcode, deadlock.pgcode = "57P01", "40P01"
        self.assertTrue(database_unavailable(self.wrapped(shutdown)))
        self.assertFalse(database_unavailable(self.wrapped(deadlock)))

    def test_a_missing_sqlite_table_is_a_bug_not_an_outage(self):
        try:
            sqlite3.connect(":memory:").execute("SELECT * FROM nowhere")
        except sqlite3.OperationalError as exc:
            missing = exc
        self.assertFalse(database_unavailable(self.wrapped(missing)))
        self.assertTrue(database_unavailable(self.wrapped(sqlite3.OperationalError("database is locked"))))


class AdminTrialJsonTests(SimpleTestCase):
    def test_a_number_or_true_in_a_list_field_is_a_field_error_not_a_500(self):
        for value in ("5", "true", '"fundus"'):
            with self.subTest(value=value):
                form = TrialAddForm(data={"modalities": value})
                self.assertFalse(form.is_valid())
                self.assertIn("modalities", form.errors)

    def test_a_list_over_the_bound_is_refused_with_the_count(self):
        form = TrialAddForm(data={"modalities": "[" + ",".join(['"fundus"'] * 101) + "]"})
        self.assertFalse(form.is_valid())
        self.assertIn("At most 100 entries", str(form.errors["modalities"]))


class DualPersonalityDicomTests(SimpleTestCase):
    def outcome(self, source) -> str:
        try:
            return process_upload(source, context()).file_format
        except UploadRejected as exc:
            return f"refused:{exc.code}"

    def test_a_tiff_header_in_the_preamble_is_read_the_same_from_bytes_and_from_a_file(self):
        data = dicom_factories.ophthalmic_photograph()
        polyglot = b"II*\x00" + data[4:]
        spooled = tempfile.TemporaryFile()
        spooled.write(polyglot)
        spooled.seek(0)
        self.assertEqual(self.outcome(spooled), self.outcome(polyglot))
