import io
import os
import subprocess
import sys

from django.test import SimpleTestCase
from PIL import Image

from tests.support import ROOT, dicom_factories, image_factories
from trials.uploads.detect import FileKind, UploadRejected, detect_file_kind

VF_HEADER = "eye,age," + ",".join(f"s{i}" for i in range(1, 55)) + ",fixation_losses,fixation_checks"


class DetectsKnownFormatsByContentTests(SimpleTestCase):
    def test_jpeg_png_and_tiff_are_recognised_from_their_bytes(self):
        self.assertEqual(detect_file_kind(image_factories.jpeg_with_metadata()), FileKind.JPEG)
        self.assertEqual(detect_file_kind(image_factories.png_with_text_chunks()), FileKind.PNG)
        self.assertEqual(detect_file_kind(image_factories.tiff_with_tags()), FileKind.TIFF)

    def test_big_endian_tiff_is_recognised(self):
        # Pillow writes little-endian TIFF; a big-endian header whose first directory lies inside the file will do.
        big = b"MM\x00*" + (8).to_bytes(4, "big") + b"\x00\x00" + b"\x00" * 8
        self.assertEqual(detect_file_kind(big), FileKind.TIFF)

    def test_dicom_with_preamble_is_recognised(self):
        self.assertEqual(detect_file_kind(dicom_factories.ophthalmic_photograph()), FileKind.DICOM)

    def test_dicom_without_preamble_is_accepted_when_it_declares_a_sop_class(self):
        data = dicom_factories.ophthalmic_photograph(preamble=False)
        self.assertNotEqual(data[128:132], b"DICM")
        self.assertEqual(detect_file_kind(data), FileKind.DICOM)

    def test_visual_field_csv_is_recognised_by_its_header(self):
        self.assertEqual(detect_file_kind((VF_HEADER + "\nOD,60\n").encode()), FileKind.VISUAL_FIELD_CSV)

    def test_visual_field_csv_columns_may_come_in_any_order(self):
        header = "s1,age,eye," + ",".join(f"s{i}" for i in range(2, 55))
        self.assertEqual(detect_file_kind((header + "\n").encode()), FileKind.VISUAL_FIELD_CSV)

    def test_visual_field_csv_with_a_byte_order_mark_is_recognised(self):
        self.assertEqual(detect_file_kind(("\ufeff" + VF_HEADER + "\n").encode()), FileKind.VISUAL_FIELD_CSV)

    def test_file_name_plays_no_part_because_only_bytes_are_passed(self):
        # A PNG renamed .jpg is still a PNG: the API takes no name at all.
        self.assertEqual(detect_file_kind(image_factories.plain_png(300, 300)), FileKind.PNG)


class RefusesEverythingElseClearlyTests(SimpleTestCase):
    def assertRejected(self, data: bytes, code: str, **kwargs) -> UploadRejected:
        with self.assertRaises(UploadRejected) as ctx:
            detect_file_kind(data, **kwargs)
        self.assertEqual(ctx.exception.code, code)
        return ctx.exception

    def test_empty_file_is_refused(self):
        self.assertIn("empty", self.assertRejected(b"", "empty").message)

    def test_file_over_the_size_limit_is_refused_before_anything_else(self):
        error = self.assertRejected(b"\xff\xd8\xff" + b"\x00" * 3 * 1024 * 1024, "too_large", max_bytes=2 * 1024 * 1024)
        self.assertIn("2 MB", error.message)

    def test_pdf_is_refused_with_the_printout_explanation(self):
        error = self.assertRejected(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n", "pdf_printout")
        self.assertIn("identifiers", error.message)
        self.assertIn("DICOM export", error.message)
        self.assertIn("CSV", error.message)

    def test_pdf_with_junk_before_its_header_is_still_refused_as_pdf(self):
        self.assertRejected(b"\r\n\x00garbage" + b"%PDF-1.4\n%%EOF", "pdf_printout")

    def test_truncated_jpeg_is_refused(self):
        data = image_factories.jpeg_with_metadata()
        self.assertRejected(data[: len(data) // 2], "truncated")

    def test_truncated_png_is_refused(self):
        data = image_factories.plain_png(300, 300)
        self.assertRejected(data[: len(data) - 20], "truncated")

    def test_tiff_whose_first_directory_lies_beyond_the_file_is_refused(self):
        self.assertRejected(b"II*\x00" + (10_000).to_bytes(4, "little") + b"\x00" * 16, "truncated")

    def test_dicom_cut_right_after_the_magic_is_refused(self):
        self.assertRejected(b"\x00" * 128 + b"DICM" + b"\x02\x00", "truncated")

    def test_unrelated_text_is_refused_pointing_to_the_documented_csv(self):
        error = self.assertRejected(b"name,mrn,date\nJane,123,2024-01-01\n", "unknown_text")
        self.assertIn("eye, age, s1", error.message)
        self.assertNotIn("Jane", error.message)

    def test_zip_archive_is_refused_with_advice(self):
        self.assertRejected(b"PK\x03\x04" + b"\x00" * 100, "archive_refused")

    def test_random_binary_is_refused_as_unknown(self):
        self.assertRejected(bytes(range(256)) * 8, "unknown_type")

    def test_gif_is_refused_as_an_unsupported_format(self):
        out = io.BytesIO()
        Image.new("RGB", (8, 8)).save(out, format="GIF")
        self.assertRejected(out.getvalue(), "format_refused")


class UploadCoreImportsNoDjangoTests(SimpleTestCase):
    def test_every_upload_module_imports_without_django(self):
        code = (
            "import importlib, pkgutil, sys\n"
            "import trials.uploads\n"
            "names = [m.name for m in pkgutil.iter_modules(trials.uploads.__path__)]\n"
            "assert {'pipeline', 'deidentify_dicom', 'dicom_elements', 'dicom_frames'} <= set(names), names\n"
            "for name in names:\n"
            "    importlib.import_module('trials.uploads.' + name)\n"
            "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
