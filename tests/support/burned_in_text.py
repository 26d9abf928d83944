"""Shared pieces of the burned-in text tests: an upload context, a fundus seen through a whole circular field, and
the check that a stamped photograph is refused or stored with none of its type readable."""

from __future__ import annotations

import io
from collections.abc import Iterable
from unittest import TestCase

from PIL import Image, ImageDraw, ImageFilter

from tests.support.image_factories import HRF, encoded
from trials.uploads.burned_in_text import read_words
from trials.uploads.deidentify_image import deidentify_image
from trials.uploads.errors import UploadRejected
from trials.uploads.pipeline import UploadContext
from trials.uploads.visual_field import ReliabilityCriteria


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


def whole_field_fundus(radius: int = 640) -> tuple[Image.Image, float, float, float]:
    """A shipped HRF photograph at twice its size (2048 x 1366) seen through a smaller circular field, whole
    within the image and with a soft edge like a camera's: the image, the circle's centre x and its top and bottom."""
    fundus = Image.open(HRF / "01_h.jpg").convert("RGB")
    fundus = fundus.resize((2 * fundus.width, 2 * fundus.height), Image.Resampling.LANCZOS)
    cx, cy = fundus.width / 2, fundus.height / 2
    mask = Image.new("L", fundus.size)
    ImageDraw.Draw(mask).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    out = Image.new("RGB", fundus.size)
    out.paste(fundus, (0, 0), mask.filter(ImageFilter.GaussianBlur(1.5)))
    return out, cx, cy - radius, cy + radius


def words_read(img: Image.Image) -> str:
    """What OCR reads in ``img``, upper-cased, words joined by spaces."""
    return " ".join(word for word, _conf, _box in read_words(img)).upper()


def assert_refused_or_unreadable(
    test: TestCase, img: Image.Image, around: tuple[int, int, int, int], words: Iterable[str]
) -> None:
    """``img`` uploaded as a photograph is refused for burned-in text, or stored with none of ``words`` read by OCR
    in the box ``around`` of the stored image."""
    try:
        result = deidentify_image(encoded(img))
    except UploadRejected as refused:
        test.assertEqual(refused.code, "burned_in_text")
        return
    read = words_read(Image.open(io.BytesIO(result.data)).crop(around))
    for word in words:
        test.assertNotIn(word, read)
