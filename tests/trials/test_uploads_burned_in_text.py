"""Burned-in text in photographs: the border outside the field of view is blanked, text inside refuses the file."""

from __future__ import annotations

import io
from unittest import mock

import numpy as np
from django.test import SimpleTestCase
from PIL import Image

from tests.support import dicom_factories, image_factories
from tests.support.image_factories import BORDER_PANEL, HRF, encoded, stamped_fundus
from trials.uploads.burned_in_text import blank_outside_field, find_field_of_view, find_text, read_words
from trials.uploads.deidentify_image import deidentify_image
from trials.uploads.errors import UploadRejected
from trials.uploads.pipeline import UploadContext, process_upload
from trials.uploads.visual_field import ReliabilityCriteria


def ocr_text(data: bytes) -> str:
    return " ".join(word for word, _conf, _box in read_words(Image.open(io.BytesIO(data)))).upper()


def context() -> UploadContext:
    return UploadContext(
        uid_key=b"k" * 32,
        subject_pseudonym="SUBJ-0001",
        protocol_id="P1",
        protocol_name="Protocol",
        site_id="H01",
        visit_day=0,
        eye="OD",
        trial_modalities=("fundus",),
        subject_age_years=60.0,
        reliability=ReliabilityCriteria(),
        max_bytes=50_000_000,
        max_pixels=50_000_000,
        min_side=256,
    )


class FieldOfViewTests(SimpleTestCase):
    def test_circle_clipped_at_top_and_bottom_is_fitted_from_its_visible_edge(self):
        yy, xx = np.ogrid[:600, :900]
        rgb = np.zeros((600, 900, 3), dtype=np.uint8)
        rgb[(xx - 450) ** 2 + (yy - 300) ** 2 <= 400**2] = (180, 80, 40)  # 800 px circle in a 600 px tall image
        fov = find_field_of_view(rgb)
        assert fov is not None
        self.assertAlmostEqual(fov.centre_x, 450, delta=6)
        self.assertAlmostEqual(fov.centre_y, 300, delta=6)
        self.assertAlmostEqual(fov.radius, 400, delta=8)

    def test_an_image_without_a_dark_border_has_no_field_to_fit(self):
        self.assertIsNone(find_field_of_view(np.full((300, 400, 3), 120, dtype=np.uint8)))

    def test_blanking_clears_the_corners_and_keeps_the_field(self):
        rgb = np.asarray(stamped_fundus(border="CANARY^PATIENT"))
        fov = find_field_of_view(rgb)
        assert fov is not None
        blanked, changed = blank_outside_field(rgb, fov)
        self.assertGreater(changed, 1000)
        self.assertEqual(int(blanked[:, :BORDER_PANEL].max()), 0)
        centre = (round(fov.centre_y), round(fov.centre_x))
        self.assertTrue((blanked[centre] == rgb[centre]).all())


class PhotographGateTests(SimpleTestCase):
    def test_every_shipped_real_photograph_passes_the_gate(self):
        # Vessels, lesions and the optic disc must not read as text: zero false positives on real photographs.
        photographs = sorted(HRF.glob("*.jpg"))
        self.assertEqual(len(photographs), 20)
        for path in photographs:
            with self.subTest(path.name):
                result = deidentify_image(path.read_bytes())
                self.assertTrue(result.text_checked)
                self.assertIsNotNone(result.field_of_view)

    def test_text_stamped_inside_the_field_refuses_the_file_naming_the_region(self):
        data = encoded(stamped_fundus(field="CANARY PATIENT 1961"))
        with self.assertRaises(UploadRejected) as ctx:
            deidentify_image(data)
        self.assertEqual(ctx.exception.code, "burned_in_text")
        self.assertIn("inside its field of view", ctx.exception.message)
        self.assertIn("at the centre of the image (x ", ctx.exception.message)  # the region, in words and pixels
        self.assertNotIn("CANARY", ctx.exception.message.upper())  # never the text itself

    def test_text_stamped_in_the_border_is_blanked_before_storage(self):
        source = stamped_fundus(border="CANARY^PATIENT\nMRN-CANARY-123\n1961-02-03")
        self.assertIn("CANARY", " ".join(w for w, _c, _b in read_words(source)).upper())  # OCR reads it there
        result = deidentify_image(encoded(source))
        self.assertGreater(result.border_pixels_blanked, 1000)
        stored = np.asarray(Image.open(io.BytesIO(result.data)))
        self.assertEqual(int(stored[:, :BORDER_PANEL].max()), 0)
        self.assertNotIn("CANARY", ocr_text(result.data))

    def test_without_the_check_the_text_inside_the_field_would_pass(self):
        data = encoded(stamped_fundus(field="CANARY PATIENT 1961"))
        result = deidentify_image(data, check_burned_in_text=False)
        self.assertFalse(result.text_checked)
        self.assertTrue(find_text(Image.open(io.BytesIO(result.data))))

    def test_a_missing_text_recogniser_refuses_rather_than_passes(self):
        data = encoded(stamped_fundus())
        with mock.patch("trials.uploads.burned_in_text.shutil.which", return_value=None):
            with self.assertRaises(UploadRejected) as ctx:
                deidentify_image(data)
        self.assertEqual(ctx.exception.code, "burned_in_text_unchecked")

    def test_the_pipeline_reports_the_field_and_the_blanked_border(self):
        result = process_upload(encoded(stamped_fundus(border="CANARY")), context())
        report = result.report["burned_in_text"]
        self.assertEqual(report["ocr"], "tesseract")
        self.assertEqual(len(report["field_of_view"]), 3)
        self.assertGreater(report["border_pixels_blanked"], 0)
        for derived in (result.preview, result.thumbnail):
            assert derived is not None
            pixels = np.asarray(Image.open(io.BytesIO(derived)))
            panel = int(0.9 * BORDER_PANEL * pixels.shape[1] / (1024 + BORDER_PANEL))  # the thumbnail fits the width
            self.assertLess(int(pixels[:, :panel].max()), 30)


class DicomPhotographGateTests(SimpleTestCase):
    def test_dicom_photograph_declaring_no_burned_in_text_is_checked_and_refused(self):
        pixels = np.asarray(stamped_fundus(field="CANARY PATIENT 1961"))
        data = dicom_factories.ophthalmic_photograph(pixels=pixels, burned_in="NO")
        with self.assertRaises(UploadRejected) as ctx:
            process_upload(data, context())
        self.assertEqual(ctx.exception.code, "burned_in_text")
        self.assertIn("BurnedInAnnotation NO", ctx.exception.message)

    def test_dicom_border_text_is_refused_too_because_its_pixels_are_kept(self):
        pixels = np.asarray(stamped_fundus(border="CANARY^PATIENT\nMRN-CANARY-123"))
        data = dicom_factories.ophthalmic_photograph(pixels=pixels, burned_in="NO")
        with self.assertRaises(UploadRejected) as ctx:
            process_upload(data, context())
        self.assertEqual(ctx.exception.code, "burned_in_text")

    def test_dicom_photograph_without_text_is_accepted(self):
        pixels = np.asarray(Image.open(HRF / "02_g.jpg").convert("RGB"))
        result = process_upload(dicom_factories.ophthalmic_photograph(pixels=pixels), context())
        self.assertEqual(result.report["burned_in_text"], {"ocr": "tesseract", "frames_checked": 1})
        self.assertNotIn(image_factories.CANARY_BYTES[0], result.content)
