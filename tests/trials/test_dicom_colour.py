"""Colours of a DICOM photograph's frame (``frame_image``): converted from YCbCr once, whichever way the frame says
it is coded. A JPEG frame with an Adobe APP14 marker is turned into RGB by libjpeg itself; pydicom converted it a
second time, a fundus came out green and the fundus gate refused it."""

from __future__ import annotations

import io

import numpy as np
from django.test import SimpleTestCase
from PIL import Image
from pydicom import dcmread
from pydicom.pixels.processing import convert_color_space

from tests.support import dicom_factories, image_factories
from tests.support.uploads import UploadTestCase
from trials.file_services import case_file_upload
from trials.uploads.dicom_frames import frame_image

# A retina's orange-red, and a bright blue that a wrong conversion could not keep either.
COLOURS = [(200, 80, 40), (40, 90, 220)]
SIZE = 64


def solid(colour: tuple[int, int, int]) -> np.ndarray:
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    pixels[...] = colour
    return pixels


def adobe(transform: int) -> bytes:
    """An APP14 Adobe marker: version 100, no flags, ``transform`` (1: the components are YCbCr, 0: RGB)."""
    return dicom_factories.jpeg_segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00" + bytes([transform]))


def jpeg(pixels: np.ndarray, *, app14: int | None = None, keep_rgb: bool = False, subsampling: int = 1) -> bytes:
    """A baseline JPEG (4:2:2 by default, as YBR_FULL_422 says), with an APP14 marker after SOI when asked."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95, keep_rgb=keep_rgb, subsampling=subsampling)
    data = out.getvalue()
    if app14 is not None:
        data = data[:2] + adobe(app14) + data[2:]
    return data


def encapsulated(frame: bytes, *, photometric: str) -> bytes:
    data = dicom_factories.encapsulated_photograph([frame], rows=SIZE, columns=SIZE)
    ds = dcmread(io.BytesIO(data))
    ds.PhotometricInterpretation = photometric
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def centre(data: bytes) -> np.ndarray:
    image = frame_image(data)
    assert image.mode == "RGB", image.mode
    return np.asarray(image)[SIZE // 2, SIZE // 2].astype(int)


class FrameColourTests(SimpleTestCase):
    def assertColour(self, data: bytes, colour: tuple[int, int, int]) -> None:
        got = centre(data)
        self.assertLessEqual(np.abs(got - np.array(colour)).max(), 4, f"{got.tolist()} is not {colour}")

    def test_a_ybr_full_422_jpeg_with_an_adobe_ycbcr_marker_keeps_its_colours(self):
        for colour in COLOURS:
            frame = jpeg(solid(colour), app14=1)
            self.assertIn(b"\xff\xee\x00\x0eAdobe", frame[:40])
            with self.subTest(colour=colour):
                self.assertColour(encapsulated(frame, photometric="YBR_FULL_422"), colour)

    def test_a_ybr_full_422_jpeg_without_an_adobe_marker_keeps_its_colours(self):
        for colour in COLOURS:
            frame = jpeg(solid(colour))
            self.assertNotIn(b"Adobe", frame)
            with self.subTest(colour=colour):
                self.assertColour(encapsulated(frame, photometric="YBR_FULL_422"), colour)

    def test_an_rgb_coded_jpeg_with_an_adobe_no_transform_marker_keeps_its_colours(self):
        for colour in COLOURS:
            frame = jpeg(solid(colour), keep_rgb=True, subsampling=0)  # Pillow writes APP14 with transform 0
            self.assertIn(b"Adobe", frame)
            with self.subTest(colour=colour):
                self.assertColour(encapsulated(frame, photometric="RGB"), colour)

    def test_an_uncompressed_ybr_full_photograph_is_converted_once(self):
        colour = COLOURS[0]
        ycbcr = convert_color_space(solid(colour), "RGB", "YBR_FULL")
        ds = dcmread(io.BytesIO(dicom_factories.ophthalmic_photograph(pixels=ycbcr)))
        ds.PhotometricInterpretation = "YBR_FULL"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        self.assertColour(out.getvalue(), colour)


class FundusGateTests(UploadTestCase):
    modalities = ("fundus",)

    def test_a_jpeg_in_dicom_fundus_photograph_with_an_adobe_marker_passes_the_gate(self):
        pixels = image_factories.fundus_pixels(256, 256)
        frame = jpeg(pixels, app14=1)
        data = dicom_factories.encapsulated_photograph([frame], rows=256, columns=256)
        outcome = case_file_upload(actor=self.w.coord1, case=self.w.case1, data=data)
        self.assertTrue(outcome.case_file.fundus_check["plausible"], outcome.case_file.fundus_check)
