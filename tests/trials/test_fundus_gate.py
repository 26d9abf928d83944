"""The fundus gate's pure checks (trials/uploads/fundus_gate.py) on the shipped HRF photographs, on what must fail
(page screenshots, text images, documents, wrong shapes) and on degraded copies of real photographs."""

from __future__ import annotations

from pathlib import Path

from django.test import SimpleTestCase
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from tests.support import image_factories
from trials.uploads.fundus_gate import assess_fundus, assess_gradability, gate_array

HRF = sorted(image_factories.HRF.glob("*.jpg"))


def check(img: Image.Image):
    return assess_fundus(gate_array(img))


def grade(img: Image.Image):
    return assess_gradability(gate_array(img))


class PlausibilityTests(SimpleTestCase):
    def test_every_shipped_hrf_photograph_is_plausible_and_gradable(self):
        self.assertGreaterEqual(len(HRF), 20)
        for path in HRF:
            with self.subTest(photo=path.name):
                img = Image.open(path).convert("RGB")
                result = check(img)
                self.assertTrue(result.plausible, result.reasons)
                self.assertTrue(result.field_of_view)
                self.assertGreater(result.red_over_green, 2.0)
                quality = grade(img)
                self.assertTrue(quality.gradable, quality.reasons)

    def test_hrf_with_a_camera_text_panel_and_as_monochrome_is_still_plausible(self):
        self.assertTrue(check(image_factories.stamped_fundus()).plausible)
        mono = check(Image.open(HRF[0]).convert("L"))
        self.assertTrue(mono.plausible, mono.reasons)
        self.assertIsNone(mono.red_over_green)  # no colour check for monochrome photographs

    def test_hrf_photographs_letterboxed_to_four_by_three_are_plausible_and_gradable(self):
        # Black bars above and below cut the field with straight lines: the circle is fitted from its curved edge.
        for path in HRF:
            with self.subTest(photo=path.name):
                img = Image.open(path).convert("RGB")
                boxed = image_factories.letterboxed(img)
                self.assertEqual(boxed.size, (img.width, img.width * 3 // 4))
                result = check(boxed)
                self.assertTrue(result.plausible, result.reasons)
                quality = grade(boxed)
                self.assertTrue(quality.gradable, quality.reasons)

    def test_screenshots_text_images_and_documents_are_not_fundus_photographs(self):
        cases = {
            "page screenshot": image_factories.web_page(),
            "dark-mode screenshot": image_factories.web_page(dark=True),
            "phone screenshot": image_factories.web_page(390, 844),
            "text image": image_factories.text_image(),
            "scanned document (grey)": image_factories.text_image().convert("L"),
            "blank white": Image.new("RGB", (800, 600), "white"),
            # Straight edges cut by the frame are not a circle's outline: a letterboxed page still has none.
            "letterboxed screenshot": image_factories.letterboxed(image_factories.web_page(1200, 700)),
            "letterboxed document": image_factories.letterboxed(image_factories.text_image()),
        }
        for name, img in cases.items():
            with self.subTest(name):
                result = check(img)
                self.assertFalse(result.plausible)
                self.assertIn("no circular field of view", "; ".join(result.reasons))

    def test_a_disc_of_the_wrong_colour_is_refused_for_its_colour(self):
        img = Image.new("RGB", (600, 600), "black")
        ImageDraw.Draw(img).ellipse((30, 30, 570, 570), fill=(40, 90, 200))  # a blue disc on black
        result = check(img)
        self.assertFalse(result.plausible)
        self.assertEqual(result.reasons, ("its colours are not a retina's (red-orange)",))

    def test_a_photograph_stretched_into_a_banner_is_refused_for_its_shape(self):
        banner = Image.open(HRF[0]).convert("RGB").resize((2400, 683))
        result = check(banner)
        self.assertFalse(result.plausible)
        self.assertTrue(any("shape" in r for r in result.reasons), result.reasons)


class GradabilityTests(SimpleTestCase):
    def setUp(self):
        self.photo = Image.open(HRF[0]).convert("RGB")

    def test_blurred_photograph_is_out_of_focus(self):
        quality = grade(self.photo.filter(ImageFilter.GaussianBlur(4)))
        self.assertFalse(quality.gradable)
        self.assertEqual(quality.reasons, ("out of focus (too little fine detail)",))
        self.assertLess(quality.focus, grade(self.photo).focus)

    def test_overexposed_photograph(self):
        quality = grade(ImageEnhance.Brightness(self.photo).enhance(3.0))
        self.assertFalse(quality.gradable)
        self.assertTrue(quality.reasons[0].startswith("overexposed"), quality.reasons)

    def test_underexposed_photograph(self):
        quality = grade(ImageEnhance.Brightness(self.photo).enhance(0.2))
        self.assertFalse(quality.gradable)
        self.assertTrue(any(r.startswith("underexposed") for r in quality.reasons), quality.reasons)

    def test_a_small_field_of_view_is_ungradable(self):
        canvas = Image.new("RGB", (2000, 1400), "black")
        canvas.paste(self.photo.resize((400, 267)), (800, 566))
        quality = grade(canvas)
        self.assertFalse(quality.gradable)
        self.assertTrue(any("field of view too small" in r for r in quality.reasons), quality.reasons)

    def test_the_measures_are_recorded_with_their_thresholds(self):
        record = grade(self.photo).as_dict()
        self.assertEqual(
            set(record),
            {"gradable", "reasons", "focus", "clipped_fraction", "dark_fraction", "field_fraction", "thresholds"},
        )
        self.assertTrue(record["gradable"])
        self.assertGreater(record["field_fraction"], 0.5)


class SpeedOnLargePhotographsTests(SimpleTestCase):
    def test_a_full_resolution_photograph_is_assessed_on_a_small_copy(self):
        big = Image.open(Path(HRF[0])).convert("RGB").resize((3504, 2336))
        self.assertLessEqual(max(gate_array(big).shape), 512)
        self.assertTrue(check(big).plausible)
