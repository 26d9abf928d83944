"""Burned-in text in photographs: fundus cameras and their viewers stamp the patient's name, ID and date into the
pixels of exported images, where no metadata stripping can reach them.

Two steps, before anything is stored:

1. **Blank the border.** The retina is imaged inside a circular field of view on a black background; cameras
   stamp their overlays in that background. The field is found as the largest bright connected region, a circle
   is fitted to its edge (robust least squares, so a field clipped at the top and bottom still fits), and every
   pixel outside the circle (plus a small margin) is set to black. If no plausible circle is found (a wide-field
   image, a montage), nothing is blanked and the whole image is searched in step 2.
2. **Search the rest for text** with Tesseract OCR (Debian's ``tesseract-ocr``, sparse-text mode ``--psm 11``,
   in the passes ``ALL_PASSES`` lists: colour and green channel, global and local thresholds). A word counts as
   text only if Tesseract is confident (at least ``MIN_CONFIDENCE``) and it has at least three letters or
   digits, mostly alphanumeric: vessels and lesions read as short, low-confidence fragments ("ae", "—", "4");
   the test suite pins zero false positives on the shipped HRF photographs. Found text refuses the file with a
   message that names the region (never the text: it may be the patient's name).

OCR runs on a copy whose longer side is at most ``OCR_MAX_SIDE`` px (Tesseract's time grows with the area;
``tests/benchmarks/bench_deidentify.py`` prints the cost per photograph). When Tesseract is not installed the
check fails closed: the upload is refused, never passed unchecked.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image
from scipy import ndimage

from trials.uploads.errors import UploadRejected

__all__ = [
    "ALL_PASSES",
    "FIELD_PASSES",
    "MIN_CONFIDENCE",
    "FieldOfView",
    "TextRegion",
    "blank_outside_field",
    "find_field_of_view",
    "find_text",
    "read_words",
    "refuse_burned_in_text",
]

MIN_CONFIDENCE: Final = 70.0  # Tesseract word confidence (0-100); stamped text reads at 90+, vessel noise below 65
OCR_MAX_SIDE: Final = 2048
OCR_TIMEOUT_S: Final = 60
_DARK_LEVEL: Final = 24  # 0-255: fundus backgrounds sit below this; the dimmest periphery of the field above it
_MARGIN: Final = 0.01  # of the radius, kept outside the fitted circle (plus 2 px) so the field's edge stays intact


@dataclass(frozen=True)
class FieldOfView:
    """The fitted circular field of view, in pixels of the full image."""

    centre_x: float
    centre_y: float
    radius: float


@dataclass(frozen=True)
class TextRegion:
    """A box where OCR read text, in pixels of the full image."""

    left: int
    top: int
    width: int
    height: int

    def describe(self, image_width: int, image_height: int) -> str:
        cx = (self.left + self.width / 2) / image_width
        cy = (self.top + self.height / 2) / image_height
        vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
        horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
        where = "centre" if (vertical, horizontal) == ("middle", "centre") else f"{vertical} {horizontal}"
        return (
            f"{where} of the image (x {self.left}-{self.left + self.width}, "
            f"y {self.top}-{self.top + self.height} of {image_width} x {image_height} px)"
        )


class _OcrUnavailable(UploadRejected):
    def __init__(self) -> None:
        super().__init__(
            "The photograph could not be checked for burned-in text because the server's text recogniser "
            "(tesseract-ocr) is not installed or failed, so it was not accepted. Please tell the trial's data manager.",
            "burned_in_text_unchecked",
        )


# --------------------------------------------------------------------------------------------------------------
# Field of view
# --------------------------------------------------------------------------------------------------------------
def find_field_of_view(rgb: np.ndarray) -> FieldOfView | None:
    """Fit the circular field of view of a fundus photograph (HxWx3 uint8), or None if there is none to fit."""
    height, width = rgb.shape[:2]
    step = max(1, max(height, width) // 512)  # the fit needs the outline, not every pixel
    bright = rgb[::step, ::step].max(axis=2) > _DARK_LEVEL
    labels, count = ndimage.label(bright)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    field = ndimage.binary_fill_holes(labels == int(sizes.argmax()))
    if field.sum() < 0.2 * field.size:
        return None
    edge = field & ~ndimage.binary_erosion(field)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = False  # where the image clips the field: not its outline
    ys, xs = np.nonzero(edge)
    if len(xs) < 50:
        return None
    fitted = _fit_circle(xs.astype(np.float64), ys.astype(np.float64))
    if fitted is None:
        return None
    cx, cy, r = fitted
    short = min(field.shape)
    if not (0.25 * short <= r <= 1.5 * max(field.shape)):
        return None
    yy, xx = np.ogrid[: field.shape[0], : field.shape[1]]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    # A circle must describe the field: most of the field inside it and most of it (within the image) filled.
    if (field & inside).sum() < 0.97 * field.sum() or (field & inside).sum() < 0.9 * inside.sum():
        return None
    return FieldOfView(centre_x=cx * step, centre_y=cy * step, radius=r * step)


def _fit_circle(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float] | None:
    """Algebraic (Kasa) least-squares circle, refitted twice without points far from it (text touching the field)."""
    keep = np.ones(len(xs), dtype=bool)
    result: tuple[float, float, float] | None = None
    for _ in range(3):
        if keep.sum() < 20:
            return None
        x, y = xs[keep], ys[keep]
        a = np.column_stack([x, y, np.ones_like(x)])
        b = -(x * x + y * y)
        (d, e, f), *_ = np.linalg.lstsq(a, b, rcond=None)
        cx, cy = -d / 2, -e / 2
        r2 = cx * cx + cy * cy - f
        if r2 <= 0:
            return None
        result = (float(cx), float(cy), float(np.sqrt(r2)))
        residual = np.abs(np.hypot(xs - cx, ys - cy) - result[2])
        keep = residual <= max(2.0, 0.02 * result[2])
    return result


def blank_outside_field(rgb: np.ndarray, fov: FieldOfView) -> tuple[np.ndarray, int]:
    """A copy with every pixel outside the field of view (plus margin) black, and how many were not black before."""
    height, width = rgb.shape[:2]
    r = fov.radius * (1 + _MARGIN) + 2
    yy, xx = np.ogrid[:height, :width]
    outside = (xx - fov.centre_x) ** 2 + (yy - fov.centre_y) ** 2 > r * r
    changed = int((outside & (rgb.max(axis=2) > 0)).sum())
    out = rgb.copy()
    out[outside] = 0
    return out, changed


# --------------------------------------------------------------------------------------------------------------
# OCR
# --------------------------------------------------------------------------------------------------------------
def _tesseract() -> str:
    path = shutil.which("tesseract")
    if path is None:
        raise _OcrUnavailable()
    return path


# OCR passes: (image, Tesseract thresholding method). Tesseract's default global Otsu threshold reads text on a
# plain dark background (a camera's text panel) but loses white text on the bright red retina once a black
# surround is in the picture (both land on the same side of the threshold); Sauvola's local threshold reads that
# but misses text on flat black. Yellow and white text differ from the red retina mostly in hue, which
# Tesseract's greyscale conversion loses, so the green channel gets a pass of its own.
COLOUR_OTSU: Final = ("colour", "0")
COLOUR_SAUVOLA: Final = ("colour", "2")
GREEN_SAUVOLA: Final = ("green", "2")
FIELD_PASSES: Final = (COLOUR_SAUVOLA, GREEN_SAUVOLA)  # a field whose surround is already blank
ALL_PASSES: Final = (COLOUR_OTSU, COLOUR_SAUVOLA, GREEN_SAUVOLA)  # an image kept as it is, border included


def read_words(
    img: Image.Image, *, passes: tuple[tuple[str, str], ...] = ALL_PASSES
) -> list[tuple[str, float, TextRegion]]:
    """Every word Tesseract reads in ``img`` in any of ``passes``, unfiltered: (text, confidence 0-100, box in
    full-image pixels)."""
    scale = 1.0
    work = img.convert("RGB") if img.mode != "RGB" else img
    if max(work.size) > OCR_MAX_SIDE:
        scale = max(work.size) / OCR_MAX_SIDE
        work = work.resize(
            (max(1, round(work.width / scale)), max(1, round(work.height / scale))), Image.Resampling.LANCZOS
        )
    words: list[tuple[str, float, TextRegion]] = []
    for channel, method in passes:
        words += _tesseract_words(work if channel == "colour" else work.getchannel("G"), scale, method)
    return words


def _tesseract_words(work: Image.Image, scale: float, method: str) -> list[tuple[str, float, TextRegion]]:
    buffer = io.BytesIO()
    work.save(buffer, format="PNG", compress_level=1)
    # One thread: uploads run side by side in workers; OpenMP threads would only fight over the cores.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments, the image goes through stdin
            [_tesseract(), "stdin", "stdout", "--psm", "11", "-c", f"thresholding_method={method}", "tsv"],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=OCR_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        raise _OcrUnavailable() from None
    if done.returncode != 0:
        raise _OcrUnavailable()
    words: list[tuple[str, float, TextRegion]] = []
    for line in done.stdout.decode("utf-8", "replace").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) != 12 or not fields[11].strip():
            continue
        try:
            confidence = float(fields[10])
            left, top, width, height = (int(v) for v in fields[6:10])
        except ValueError:
            continue
        box = TextRegion(
            left=round(left * scale),
            top=round(top * scale),
            width=max(1, round(width * scale)),
            height=max(1, round(height * scale)),
        )
        words.append((fields[11].strip(), confidence, box))
    return words


def find_text(img: Image.Image, *, passes: tuple[tuple[str, str], ...] = ALL_PASSES) -> list[TextRegion]:
    """Boxes of the words in ``img`` that count as text (see the module docstring), in full-image pixels."""
    return [box for word, confidence, box in read_words(img, passes=passes) if _is_text(word, confidence)]


def _is_text(word: str, confidence: float) -> bool:
    alnum = sum(c.isalnum() for c in word)
    return confidence >= MIN_CONFIDENCE and alnum >= 3 and alnum >= 0.6 * len(word)


def refuse_burned_in_text(img: Image.Image, *, where: str, passes: tuple[tuple[str, str], ...] = ALL_PASSES) -> None:
    """Raise UploadRejected naming the region if OCR finds text in ``img``. ``where`` says what was searched."""
    regions = find_text(img, passes=passes)
    if not regions:
        return
    left = min(r.left for r in regions)
    top = min(r.top for r in regions)
    right = max(r.left + r.width for r in regions)
    bottom = max(r.top + r.height for r in regions)
    box = TextRegion(left=left, top=top, width=right - left, height=bottom - top)
    raise UploadRejected(
        f"Text is burned into the photograph {where}, at the {box.describe(img.width, img.height)}. Such overlays "
        "can show the patient's name, ID or date: export the photograph from the camera or viewer without the text "
        "overlay and upload it again.",
        "burned_in_text",
    )
