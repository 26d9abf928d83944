import io

import numpy as np
from django.test import SimpleTestCase
from PIL import Image

from tests.support import image_factories as factories
from trials.uploads.deidentify_image import (
    deidentify_image,
    jpeg_markers,
    make_preview,
    make_thumbnail,
    png_chunk_types,
)
from trials.uploads.errors import UploadRejected


def decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def is_red(pixel) -> bool:
    r, g, b = pixel[:3]
    return r > 200 and g < 60 and b < 60


class CanaryRemovalTests(SimpleTestCase):
    def test_no_canary_survives_from_any_metadata_container(self):
        sources = {
            "jpeg exif/xmp/icc/com": factories.jpeg_with_metadata(),
            "png text/ztxt/itxt/icc/exif": factories.png_with_text_chunks(),
            "tiff tags": factories.tiff_with_tags(),
        }
        for name, source in sources.items():
            with self.subTest(name):
                self.assertIn(b"CANARY", source)
                result = deidentify_image(source)
                for canary in factories.CANARY_BYTES:
                    self.assertNotIn(canary, result.data, f"{canary!r} leaked from {name}")

    def test_png_output_holds_only_image_chunks(self):
        result = deidentify_image(factories.png_with_text_chunks())
        self.assertEqual(set(png_chunk_types(result.data)), {b"IHDR", b"IDAT", b"IEND"})
        self.assertEqual(result.format, "PNG")
        self.assertNotIn("icc_profile", decoded(result.data).info)

    def test_jpeg_output_has_no_app1_app2_or_comment_segments(self):
        result = deidentify_image(factories.jpeg_with_metadata(), output_format="JPEG")
        markers = jpeg_markers(result.data)
        self.assertTrue(markers)
        self.assertFalse({0xE1, 0xE2, 0xED, 0xFE} & set(markers))  # APP1 EXIF/XMP, APP2 ICC, APP13 IPTC, COM
        self.assertEqual(decoded(result.data).format, "JPEG")

    def test_report_names_the_kinds_of_metadata_stripped_and_no_values(self):
        jpeg = deidentify_image(factories.jpeg_with_metadata())
        self.assertLessEqual({"exif", "xmp", "icc_profile", "comment"}, set(jpeg.stripped))
        png = deidentify_image(factories.png_with_text_chunks())
        self.assertLessEqual({"text_chunks", "xmp", "icc_profile", "exif"}, set(png.stripped))
        tiff = deidentify_image(factories.tiff_with_tags())
        self.assertIn("tiff_text_tags", tiff.stripped)
        for result in (jpeg, png, tiff):
            self.assertNotIn("CANARY", repr(result.stripped).upper())

    def test_icc_profile_is_applied_then_dropped(self):
        result = deidentify_image(factories.jpeg_with_metadata())
        self.assertTrue(result.colour_converted)


class OrientationAndPixelsTests(SimpleTestCase):
    def test_exif_orientation_is_applied_to_jpeg(self):
        # Orientation 6 = rotate 90 degrees clockwise to display: the red top-left block ends up top-right.
        # Without a field of view (fundus=False) nothing is blanked, so the corner block survives.
        result = deidentify_image(factories.jpeg_with_metadata(orientation=6, fundus=False))
        self.assertEqual((result.width, result.height), (300, 400))
        self.assertEqual(result.orientation_applied, 6)
        img = decoded(result.data)
        self.assertTrue(is_red(img.getpixel((result.width - 10, 10))))
        self.assertFalse(is_red(img.getpixel((10, 10))))

    def test_orientation_tag_is_applied_to_tiff(self):
        result = deidentify_image(factories.tiff_with_tags(orientation=6, fundus=False))
        self.assertEqual((result.width, result.height), (300, 400))
        self.assertTrue(is_red(decoded(result.data).getpixel((result.width - 10, 10))))

    def test_png_pixels_are_kept_exactly(self):
        source = factories.png_with_text_chunks(fundus=False)
        result = deidentify_image(source)
        self.assertTrue(np.array_equal(np.asarray(decoded(source).convert("RGB")), np.asarray(decoded(result.data))))

    def test_sixteen_bit_grey_is_scaled_not_clipped(self):
        result = deidentify_image(factories.png_16bit_grey())
        arr = np.asarray(decoded(result.data))
        self.assertEqual(arr.shape[2], 3)
        self.assertGreater(arr.max(), 200)
        self.assertGreater(len(np.unique(arr)), 100)

    def test_transparent_areas_become_black(self):
        img = Image.new("RGBA", (300, 300), (255, 255, 255, 0))
        out = io.BytesIO()
        img.save(out, format="PNG")
        arr = np.asarray(decoded(deidentify_image(out.getvalue()).data))
        self.assertEqual(arr.max(), 0)


class RefusalTests(SimpleTestCase):
    def assertRefused(self, data: bytes, code: str, **kwargs) -> UploadRejected:
        with self.assertRaises(UploadRejected) as ctx:
            deidentify_image(data, **kwargs)
        self.assertEqual(ctx.exception.code, code)
        self.assertNotIn("CANARY", ctx.exception.message)
        return ctx.exception

    def test_image_too_small_to_grade_is_refused(self):
        error = self.assertRefused(factories.plain_png(200, 300), "image_too_small")
        self.assertIn("256", error.message)

    def test_minimum_side_is_a_parameter(self):
        self.assertEqual(deidentify_image(factories.plain_png(200, 300), min_side=128).width, 200)

    def test_decompression_bomb_is_refused_from_its_header(self):
        # Rejected as too large (not as undecodable): the header check runs before any pixel is decoded.
        self.assertRefused(factories.png_bomb(side=10_000), "image_too_large")

    def test_pixel_budget_is_a_parameter(self):
        self.assertRefused(factories.plain_png(400, 300), "image_too_large", max_pixels=100_000)

    def test_truncated_jpeg_is_refused(self):
        data = factories.jpeg_with_metadata()
        self.assertRefused(data[: len(data) * 2 // 3], "image_unreadable")

    def test_corrupt_png_is_refused(self):
        data = bytearray(factories.plain_png(300, 300))
        data[60:200] = b"\x00" * 140  # inside the first IDAT
        self.assertRefused(bytes(data), "image_unreadable")

    def test_empty_and_random_bytes_are_refused(self):
        self.assertRefused(b"", "image_unreadable")
        self.assertRefused(bytes(range(256)) * 4, "image_unreadable")


class PreviewTests(SimpleTestCase):
    def test_preview_is_a_clean_jpeg_within_the_requested_size(self):
        preview = make_preview(factories.jpeg_with_metadata(orientation=6), 128)
        img = decoded(preview)
        self.assertEqual(img.format, "JPEG")
        self.assertEqual(max(img.size), 128)
        self.assertEqual(img.size, (96, 128))  # orientation applied
        self.assertFalse({0xE1, 0xE2, 0xFE} & set(jpeg_markers(preview)))
        self.assertNotIn(b"CANARY", preview)

    def test_thumbnail_is_square_and_letterboxed_on_black(self):
        thumbnail = decoded(make_thumbnail(factories.png_with_text_chunks(), 96))
        self.assertEqual(thumbnail.size, (96, 96))
        arr = np.asarray(thumbnail)
        self.assertLess(arr[2, 48].max(), 16)  # band above the 4:3 picture is black

    def test_preview_refuses_a_bomb_too(self):
        with self.assertRaises(UploadRejected):
            make_preview(factories.png_bomb(side=10_000), 256)
