"""Uploads are streamed (issue 13, item 8): a large file is spooled to an unnamed temporary file, reaches the service
as that file, and is de-identified and stored without being read into memory whole. The figures for a 255 MB file
are in ``tests/benchmarks/bench_upload_memory.py``; these tests prove the design without timing anything."""

from __future__ import annotations

import io
import json
import os
import tempfile
import tracemalloc
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.core.files.storage import default_storage
from django.test import SimpleTestCase
from django.test.client import ClientHandler

from platform_core.accounts.services import api_token_issue
from platform_core.upload_handlers import UnnamedTemporaryFileUploadHandler
from tests.support import dicom_factories
from tests.support.uploads import UploadTestCase
from trials.models import CaseFile
from trials.uploads import dicom_dataset, dicom_leaks, spool
from trials.uploads.deidentify_dicom import DeidentifyOptions, deidentify_dicom, frame_image

BOUNDARY = "visusteststreamboundary"
MIB = 1024 * 1024


def multipart_body(upload: Path, body: Path) -> None:
    """The request body a browser sends for ``upload`` in the field ``file``, written to ``body`` in chunks."""
    with body.open("wb") as out, upload.open("rb") as source:
        out.write(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="volume.dcm"\r\n'
            "Content-Type: application/dicom\r\n\r\n".encode()
        )
        while block := source.read(MIB):
            out.write(block)
        out.write(f"\r\n--{BOUNDARY}--\r\n".encode())


class StreamedUploadTests(UploadTestCase):
    """A 32 MiB OCT volume (32 B-scans of 1024 x 512, 16 bits, 12 stored) through the real API view."""

    modalities = ("oct",)
    frames = 32

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.folder = Path(tempfile.mkdtemp(prefix="visus-stream-test-"))
        cls.volume = cls.folder / "volume.dcm"
        cls.size = dicom_factories.write_large_oct_volume(cls.volume, frames=cls.frames)
        cls.body = cls.folder / "volume.body"
        multipart_body(cls.volume, cls.body)

    @classmethod
    def tearDownClass(cls):
        for path in cls.folder.iterdir():
            path.unlink()
        cls.folder.rmdir()
        super().tearDownClass()

    def post_body(self) -> tuple[int, dict]:
        """POST the body from disk through Django's request handler, as a web server hands it over: the test client
        would build the whole body in memory first."""
        token = api_token_issue(user=self.w.coord1)
        with self.body.open("rb") as stream:
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": self.url,
                "SCRIPT_NAME": "",
                "QUERY_STRING": "",
                "SERVER_NAME": "testserver",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_AUTHORIZATION": f"Token {token}",
                "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
                "CONTENT_LENGTH": str(self.body.stat().st_size),
                "wsgi.input": stream,
                "wsgi.errors": io.StringIO(),
                "wsgi.url_scheme": "http",
                "wsgi.version": (1, 0),
                "wsgi.multithread": False,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
            }
            response = ClientHandler(enforce_csrf_checks=False)(environ)
            return response.status_code, json.loads(response.content)

    def test_a_large_upload_reaches_the_service_as_an_unnamed_file_on_disk(self):
        from trials import file_apis

        seen = {}
        real = file_apis.case_file_upload

        def spy(**kwargs):
            data = kwargs["data"]
            seen["bytes"] = isinstance(data, bytes | bytearray)
            if not seen["bytes"]:
                stat = os.fstat(data.fileno())  # a real file of the operating system, not memory
                seen["size"], seen["links"] = stat.st_size, stat.st_nlink
            return real(**kwargs)

        with mock.patch.object(file_apis, "case_file_upload", side_effect=spy):
            status, body = self.post_body()
        self.assertEqual(status, 201, body)
        self.assertFalse(seen["bytes"], "the view read the whole upload into memory")
        self.assertEqual(seen["size"], self.size)
        self.assertEqual(seen["links"], 0, "the spooled upload has a name on disk")

    def test_memory_of_the_request_stays_far_below_the_file_size(self):
        # A small volume first: what the first upload of a process allocates for good (imports, the S3 client and
        # its service model) is not what each request costs.
        small = self.folder / "small.dcm"
        dicom_factories.write_large_oct_volume(small, frames=2, rows=64, columns=64)
        self.assertEqual(self.upload(small.read_bytes(), "small.dcm").status_code, 201)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            status, body = self.post_body()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertEqual(status, 201, body)
        # Before streaming: the upload in memory, read() of it, pydicom's copy, the masked copies, the output: 5-7x
        # the file. Now: a few 1 MiB blocks, one decoded B-scan, and the S3 upload's parts (at most 3 of 5 MiB, the
        # same for any size), so less than one copy of the file.
        self.assertLess(peak, self.size * 3 // 4, f"peak {peak / MIB:.1f} MiB for a {self.size / MIB:.1f} MiB upload")
        stored = CaseFile.objects.get(pk=body["id"])
        self.assertEqual(stored.frames, self.frames)
        with default_storage.open(stored.content.name) as handle:
            data = handle.read()
        self.assertEqual(len(data), stored.size)
        for canary in dicom_factories.CANARY_STRINGS:
            self.assertNotIn(canary, data)


class UploadSettingsTests(SimpleTestCase):
    def test_files_over_a_few_megabytes_are_spooled_to_disk(self):
        self.assertLessEqual(settings.FILE_UPLOAD_MAX_MEMORY_SIZE, 4 * MIB)
        handlers = settings.FILE_UPLOAD_HANDLERS
        self.assertEqual(
            handlers[-1], f"{UnnamedTemporaryFileUploadHandler.__module__}.UnnamedTemporaryFileUploadHandler"
        )


class StreamedDeidentificationTests(SimpleTestCase):
    """The streamed path (pixel data left in the file, output spooled to disk, a few bytes at a time) writes the same
    bytes as the in-memory one, for every kind of pixel data."""

    options = DeidentifyOptions(
        uid_key=b"k" * 32,
        subject_pseudonym="SUBJ-1",
        sponsor_name="S",
        protocol_id="P",
        site_id="H01",
        time_point_id="0",
    )

    def inputs(self) -> dict[str, bytes]:
        return {
            "native 8-bit": dicom_factories.ophthalmic_photograph(),
            "native 16-bit, masked": dicom_factories.ophthalmic_photograph(bits=16),
            "OCT volume": dicom_factories.oct_volume(frames=5),
            "no preamble": dicom_factories.ophthalmic_photograph(preamble=False),
            "JPEG, 3 frames": dicom_factories.encapsulated_photograph(
                [dicom_factories.canary_jpeg(seed=s) for s in (1, 2, 3)]
            ),
        }

    def test_streamed_output_is_byte_for_byte_the_in_memory_output(self):
        for name, data in self.inputs().items():
            with self.subTest(name):
                in_memory = deidentify_dicom(data, options=self.options)
                with (
                    mock.patch.object(dicom_dataset, "DEFER_BYTES", 16),
                    mock.patch.object(dicom_leaks, "DEFER_BYTES", 16),
                    mock.patch.object(spool, "IN_MEMORY", 64),
                    mock.patch.object(spool, "CHUNK", 999),  # odd: blocks end mid-sample
                    tempfile.TemporaryFile() as source,
                ):
                    source.write(data)
                    streamed = deidentify_dicom(source, options=self.options)
                    self.assertTrue(streamed.file._rolled, "the output was not spooled to disk")
                    self.assertEqual(streamed.data, in_memory.data)
                    self.assertEqual(streamed.report, in_memory.report)
                    self.assertEqual(
                        frame_image(streamed.file).tobytes(), frame_image(in_memory.data).tobytes(), "frame 0"
                    )

    def test_the_pixel_data_is_never_read_into_memory(self):
        """A DICOM file whose pixel data cannot be read whole: the value is read through a file that refuses reads
        larger than one chunk."""
        data = dicom_factories.ophthalmic_photograph(bits=16, rows=512, columns=512)  # 1.5 MiB of pixels

        class Chunky(io.BytesIO):
            def read(self, size=-1):
                if size is None or size < 0 or size > 2 * MIB:
                    raise AssertionError(f"read({size}) of the whole file")
                return super().read(size)

            def readinto(self, buffer):
                if len(buffer) > 2 * MIB:
                    raise AssertionError(f"readinto of {len(buffer)} bytes")
                return super().readinto(buffer)

        result = deidentify_dicom(Chunky(data), options=self.options)
        self.assertEqual(result.size, deidentify_dicom(data, options=self.options).size)
