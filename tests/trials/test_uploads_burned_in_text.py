"""Burned-in text in photographs: the border outside the field of view is blanked, text inside refuses the file."""

from __future__ import annotations

import dataclasses
import io
import itertools
import subprocess
from unittest import mock

import numpy as np
from django.test import SimpleTestCase
from PIL import Image, ImageDraw, ImageFont

from tests.support import dicom_factories, image_factories
from tests.support.burned_in_text import assert_refused_or_unreadable, context, whole_field_fundus
from tests.support.image_factories import BORDER_PANEL, HRF, encoded, letterboxed, stamped_fundus
from trials.uploads import pipeline
from trials.uploads.burned_in_text import (
    EDGE_LEVEL,
    OcrBudget,
    blank_outside_field,
    find_field_of_view,
    find_text,
    read_words,
    text_candidates,
)
from trials.uploads.deidentify_image import deidentify_image
from trials.uploads.errors import UploadRejected
from trials.uploads.pipeline import process_upload


def ocr_text(data: bytes) -> str:
    return " ".join(word for word, _conf, _box in read_words(Image.open(io.BytesIO(data)))).upper()


def noise_image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(9).integers(0, 256, (1200, 1600, 3), dtype=np.uint8))


RIM_STAMP = "JANE DOE 1961"


def stamped_over_the_rim(where: str, size: int, dy: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``whole_field_fundus`` with "JANE DOE 1961" in white ``size`` px type along the ``where`` ("top" or "bottom")
    of its circle, over its edge, beginning ``dy`` px inside it: the image and a box around the type."""
    img, cx, top, bottom = whole_field_fundus()
    font = ImageFont.load_default(size=size)
    left, ascent, right, descent = font.getbbox(RIM_STAMP)
    y = top + dy - ascent if where == "top" else bottom - dy - descent
    ImageDraw.Draw(img).text((cx - (right - left) / 2, y), RIM_STAMP, fill="white", font=font)
    return img, (int(cx - right), int(y - 40), int(cx + right), int(y + descent + 40))


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

    def test_a_field_cut_by_letterbox_bars_is_fitted_from_its_curved_edge(self):
        img = Image.open(HRF / "01_h.jpg").convert("RGB")
        plain = find_field_of_view(np.asarray(img))
        boxed = find_field_of_view(np.asarray(letterboxed(img)))
        assert plain is not None and boxed is not None
        bar = (img.width * 3 // 4 - img.height) // 2
        self.assertAlmostEqual(boxed.centre_x, plain.centre_x, delta=2)
        self.assertAlmostEqual(boxed.centre_y, plain.centre_y + bar, delta=2)
        self.assertAlmostEqual(boxed.radius, plain.radius, delta=2)
        assert boxed.cut is not None
        self.assertAlmostEqual(boxed.cut[1], bar, delta=2)  # the top of the field, where the bar begins
        self.assertIsNone(plain.cut)  # clipped by the image's own edge: nothing inside the image cuts it

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


class TextCandidateTests(SimpleTestCase):
    """The cheap pre-screen that decides which crops Tesseract reads."""

    def test_real_photographs_leave_little_for_tesseract_to_read(self):
        # Vessels, lesions and the rim have no edges as strong and dense as type; only a sharp optic disc does.
        for path in sorted(HRF.glob("*.jpg")):
            with self.subTest(path.name):
                rgb = np.asarray(Image.open(path).convert("RGB"))
                fov = find_field_of_view(rgb)
                assert fov is not None
                blanked, _ = blank_outside_field(rgb, fov)
                yy, xx = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
                inner = (xx - fov.centre_x) ** 2 + (yy - fov.centre_y) ** 2 <= (0.97 * fov.radius) ** 2
                boxes = text_candidates(blanked, inner)
                area = sum((right - left) * (bottom - top) for left, top, right, bottom in boxes)
                self.assertLess(area, 0.03 * rgb.shape[0] * rgb.shape[1], boxes)

    def test_a_stamp_is_inside_one_candidate_crop(self):
        img = stamped_fundus(field="CANARY PATIENT 1961")
        rgb = np.asarray(img)
        boxes = text_candidates(rgb, np.ones(rgb.shape[:2], dtype=bool))
        stamp_left, stamp_top = BORDER_PANEL + 330, 320  # where stamped_fundus draws it (40 px type)
        self.assertTrue(
            any(
                left <= stamp_left and top <= stamp_top and right >= stamp_left + 300 and bottom >= stamp_top + 30
                for left, top, right, bottom in boxes
            ),
            boxes,
        )

    def test_type_fainter_than_the_edge_level_is_never_a_candidate(self):
        # The limit SECURITY.md states: type less than EDGE_LEVEL grey levels from its background is not searched.
        for contrast, searched in ((EDGE_LEVEL - 8, False), (EDGE_LEVEL + 32, True)):
            with self.subTest(contrast=contrast):
                img = Image.new("RGB", (640, 480), (120, 60, 30))
                ink = (120 + contrast, 60 + contrast, 30 + contrast)
                ImageDraw.Draw(img).text((40, 200), "DOE JOHN 1234567", fill=ink, font=ImageFont.load_default(size=40))
                rgb = np.asarray(img)
                self.assertEqual(bool(text_candidates(rgb, np.ones(rgb.shape[:2], dtype=bool))), searched)


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

    def test_small_yellow_type_on_the_bright_retina_is_found(self):
        # Once missed: yellow on the red-orange retina is lost in Tesseract's grey; the crops are cut at Otsu's
        # threshold of their most separable channel instead.
        fundus = Image.open(HRF / "01_h.jpg").convert("RGB")
        for position in ((100, 150), (250, 80)):
            with self.subTest(position=position):
                img = fundus.copy()
                ImageDraw.Draw(img).text(
                    position, "JANE DOE 1961", fill=(255, 255, 0), font=ImageFont.load_default(size=24)
                )
                with self.assertRaises(UploadRejected) as ctx:
                    deidentify_image(encoded(img))
                self.assertEqual(ctx.exception.code, "burned_in_text")

    def test_text_stamped_over_the_rim_of_the_field_is_never_stored_unread(self):
        # Once missed: the field's rim (4 px plus 1% of the radius either side of the fitted circle, its edge no
        # stroke) was kept in the stored image but left out of the candidate search, so type written along the top
        # or bottom of the circle, over its edge, was stored as it was. Refused, or what is stored reads as nothing.
        for where, size, dy in itertools.product(("top", "bottom"), (18, 24), (-8, -4, 0, 4)):
            with self.subTest(where=where, size=size, dy=dy):
                img, around = stamped_over_the_rim(where, size, dy)
                assert_refused_or_unreadable(self, img, around, RIM_STAMP.split())

    def test_type_cut_by_the_blanking_at_the_fields_edge_refuses_the_file(self):
        # Once stored in part: blanking cuts type over the field's edge, and what it leaves inside (the lower or the
        # upper half of each letter) is found but unreadable to OCR, if not to a person. The crop is read with the
        # rim put back.
        for where, size, dy in (("top", 24, 0), ("bottom", 24, 0), ("bottom", 18, 0)):
            with self.subTest(where=where, size=size, dy=dy):
                img, _around = stamped_over_the_rim(where, size, dy)
                with self.assertRaises(UploadRejected) as ctx:
                    deidentify_image(encoded(img))
                self.assertEqual(ctx.exception.code, "burned_in_text")

    def test_a_letterboxed_photograph_passes_and_text_in_its_bars_is_blanked(self):
        img = letterboxed(Image.open(HRF / "03_dr.jpg").convert("RGB"))
        ImageDraw.Draw(img).text(
            (16, 8), "CANARY^PATIENT 1961-02-03", fill="white", font=ImageFont.load_default(size=22)
        )
        self.assertIn("CANARY", " ".join(w for w, _c, _b in read_words(img)).upper())
        result = deidentify_image(encoded(img))
        assert result.field_of_view is not None and result.field_of_view.cut is not None
        self.assertNotIn("CANARY", ocr_text(result.data))

    def test_text_in_a_letterbox_bar_within_the_circles_reach_is_never_stored(self):
        # The fitted circle reaches into the bars that cut the field; the search reads only the field's extent, so
        # the bars are blanked whole: nothing that was not searched is stored.
        img = letterboxed(Image.open(HRF / "03_dr.jpg").convert("RGB").resize((1600, 900)))  # 150 px bars
        ImageDraw.Draw(img).text((620, 60), "DOE JOHN 1234567", fill="white", font=ImageFont.load_default(size=40))
        self.assertEqual(img.size, (1600, 1200))
        fov = find_field_of_view(np.asarray(img))
        assert fov is not None and fov.cut is not None
        self.assertLess(fov.centre_y - fov.radius, 60)  # the circle covers the text in the bar
        self.assertIn("DOE JOHN 1234567", " ".join(w for w, _c, _b in read_words(img)).upper())
        result = process_upload(encoded(img), context())  # stored, not refused: the retina holds no text
        stored = np.asarray(Image.open(io.BytesIO(result.content)))
        self.assertEqual(int(stored[:140].max()), 0)
        self.assertEqual(int(stored[-140:].max()), 0)
        for data in (result.content, result.preview, result.thumbnail):
            assert data is not None
            text = ocr_text(data)
            for word in ("DOE", "JOHN", "1234567"):
                self.assertNotIn(word, text)

    def test_a_photograph_of_noise_is_refused_unread(self):
        # Pixel noise is all edges: every block is a text candidate, and Tesseract would read all of it for a minute
        # or more. It is refused before any OCR, never stored unchecked, with or without the coordinator's
        # not-a-fundus exception.
        data = encoded(noise_image(), "PNG")
        for reason in ("", "Wide-field camera, checked by the coordinator"):
            with self.subTest(exception=bool(reason)):
                with self.assertRaises(UploadRejected) as ctx:
                    process_upload(data, dataclasses.replace(context(), fundus_exception_reason=reason))
                self.assertEqual(ctx.exception.code, "burned_in_text_uncheckable")
                self.assertIn("too much for it to be checked for burned-in text", ctx.exception.message)

    def test_a_search_that_runs_out_of_time_refuses_the_file(self):
        # Without the density refusal, the same noise is read by Tesseract until the file's one budget runs out.
        data = encoded(noise_image(), "PNG")
        with (
            mock.patch("trials.uploads.burned_in_text.MAX_DENSE_FRACTION", 1.01),
            mock.patch("trials.uploads.burned_in_text.OCR_BUDGET_S", 1.5),
        ):
            for reason in ("", "Wide-field camera, checked by the coordinator"):
                with self.subTest(exception=bool(reason)):
                    with self.assertRaises(UploadRejected) as ctx:
                        process_upload(data, dataclasses.replace(context(), fundus_exception_reason=reason))
                    self.assertEqual(ctx.exception.code, "burned_in_text_timeout")
                    self.assertIn("could not be checked for burned-in text within 1.5 seconds", ctx.exception.message)
            with self.assertRaises(UploadRejected) as ctx:
                deidentify_image(data)
            self.assertEqual(ctx.exception.code, "burned_in_text_timeout")

    def test_one_budget_covers_every_search_of_a_file(self):
        budget = OcrBudget(0.0)
        with self.assertRaises(UploadRejected) as ctx:
            find_text(stamped_fundus(field="CANARY"), budget=budget)
        self.assertEqual(ctx.exception.code, "burned_in_text_timeout")

    def test_only_tesseract_time_counts_against_the_budget(self):
        # Decoding and the fundus gate of a large file on a loaded server use none of the budget: 60 s pass before
        # the first OCR and the text is still found. Each Tesseract run here takes 6 s of the 10.
        clock = [1000.0]
        real_assess, real_run = pipeline.assess_fundus, subprocess.run

        def slow_gate(small):
            clock[0] += 60
            return real_assess(small)

        def slow_tesseract(*args, **kwargs):
            clock[0] += 6
            return real_run(*args, **kwargs)

        img = stamped_fundus(field="CANARY PATIENT 1961")
        with (
            mock.patch("trials.uploads.burned_in_text.time") as fake_time,
            mock.patch("trials.uploads.pipeline.assess_fundus", slow_gate),
            mock.patch("trials.uploads.burned_in_text.subprocess.run", side_effect=slow_tesseract) as tesseract,
        ):
            fake_time.monotonic.side_effect = lambda: clock[0]
            with self.assertRaises(UploadRejected) as ctx:
                process_upload(encoded(img), context())
            self.assertEqual(ctx.exception.code, "burned_in_text")
            self.assertEqual(tesseract.call_count, 1)
            budget = OcrBudget()
            self.assertTrue(find_text(img, budget=budget))
            self.assertTrue(find_text(img, budget=budget))  # 12 s spent: the run that went over still finished
            self.assertEqual(budget.spent, 12)
            with self.assertRaises(UploadRejected) as ctx:
                find_text(img, budget=budget)
            self.assertEqual(ctx.exception.code, "burned_in_text_timeout")
            self.assertEqual(tesseract.call_count, 3)

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

    def test_dicom_text_over_the_rim_of_the_field_is_refused(self):
        # Once missed: its pixels are kept as they are, and the rim was left out of the search; and type over the
        # field's edge, where a crop found it, was read in the channel that separates the retina from the dark.
        for where, size, dy in (("top", 18, -4), ("top", 18, 4), ("top", 24, 0), ("bottom", 24, -8)):
            with self.subTest(where=where, size=size, dy=dy):
                img, _around = stamped_over_the_rim(where, size, dy)
                data = dicom_factories.ophthalmic_photograph(pixels=np.asarray(img), burned_in="NO")
                with self.assertRaises(UploadRejected) as ctx:
                    process_upload(data, context())
                self.assertEqual(ctx.exception.code, "burned_in_text")

    def test_dicom_photograph_without_text_is_accepted(self):
        pixels = np.asarray(Image.open(HRF / "02_g.jpg").convert("RGB"))
        result = process_upload(dicom_factories.ophthalmic_photograph(pixels=pixels), context())
        self.assertEqual(result.report["burned_in_text"], {"ocr": "tesseract", "frames_checked": 1})
        self.assertNotIn(image_factories.CANARY_BYTES[0], result.content)
