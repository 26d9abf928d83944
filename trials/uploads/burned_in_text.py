"""Burned-in text in photographs: fundus cameras and their viewers stamp the patient's name, ID and date into the
pixels of exported images, where no metadata stripping can reach them.

Three steps, before anything is stored:

1. **Blank the border.** The retina is imaged inside a circular field of view on a black background; cameras stamp
   their overlays in that background. The field is found as the largest bright connected region, less what is thinner
   than a few pixels (``_OPENING``: type touching the field would join it, and its outline would then fit neither a
   cut nor a circle), a circle is fitted to its edge (robust least squares, so a field clipped at the top and bottom
   still fits; where black bars of a letterboxed export cut it with straight lines, those lines are left out of the
   fit; a cut's line is the longest run of outline within ``_CUT_REACH`` of the field's extreme row or column, past
   which the feet of type standing on it may reach), and every pixel outside the circle is set to black, and where
   bars cut the field, every pixel outside the field's extent too:
   the circle reaches into the bars, and what is stored there would otherwise go unsearched. The field's own rim
   (``_RIM_PX`` at OCR size plus ``_MARGIN`` of the radius inside the circle and the cuts) goes with the border:
   its edge is no stroke and cannot be searched for strokes, and type written over it was once stored unread.
   The search reads exactly what is kept (``kept_mask``), up to ``_SEAM_PX`` from the blanked edge (no type fits
   in that), and a crop it finds at that edge with the rim put back (``blanked_rim``): type over the field's edge,
   which blanking cuts, is read whole and refuses the file, not stored in part. If no plausible circle is found (a
   wide-field image, a montage, an oval field), nothing is blanked and the whole image is searched.
2. **Find text candidates** without OCR (``text_candidates``, numpy): type has dense, sharp stroke edges, a change
   of at least ``EDGE_LEVEL`` grey levels across two pixels in some colour channel, on ``BLOCK`` px blocks with at
   least ``MIN_BLOCK_EDGES`` such pixels. Vessels, lesions and the dim periphery stay below it; only a sharp optic
   disc reaches it on the shipped HRF photographs (under 3% of the image, ``tests/trials/
   test_uploads_burned_in_text.py``). The edge of what blanking kept is left out (``_SEAM_PX`` either side), and
   where nothing was blanked (a DICOM file's pixels are kept as they are), as much either side of a fitted circle.
   Blocks are grouped with their neighbours into crops. **Limit:** type whose contrast with its background is
   below ``EDGE_LEVEL`` (48 grey levels) in every colour channel never makes a candidate, so it is never read and
   is stored as it is (inside the field; the blanked border is black whatever it held).
3. **Read the crops** with Tesseract OCR (Debian's ``tesseract-ocr``, sparse-text mode ``--psm 11``), with
   Tesseract's local (Sauvola) threshold: each crop's most separable colour channel (yellow type on the
   red-orange retina separates in blue, not in grey) cut at Otsu's threshold, strokes black on white, and that
   channel and the luminance as they are (for a crop that a bright optic disc shares with the type), small crops at
   twice their size, stacked on pages of at most ``_SHEET_PX`` px, one Tesseract process each (on a taller page
   of large crops, Tesseract read nothing of the type it reads on a part of it). A crop over the edge of an
   unblanked field is also read without its dark surround (``_dark_surround``: type over the field's edge), and
   where no circle fits, without the bright field (``_bright_body``: type over an oval field's edge); these versions
   are added to the crop's own, never replace them (type on the surround beside a sliver of the field is the larger
   class without the surround, and lost). A word counts as text only if Tesseract is confident (at least
   ``MIN_CONFIDENCE``) and it has at least three letters or digits, mostly alphanumeric: vessels and lesions read
   as short, low-confidence fragments ("ae", "—", "4"); the test suite pins zero false positives on the shipped
   HRF photographs. Found text refuses the file with a message that names the region (never the text: it may be
   the patient's name).

**Time.** All OCR of one file (every frame, the fundus gate's look at a refused image included) shares one
``OcrBudget`` of ``OCR_BUDGET_S`` seconds of Tesseract: the wall time of its processes, not the decoding, gate and
candidate search around them. Tesseract is killed when it runs out and the file is refused
(``burned_in_text_timeout``), never stored unchecked, and no exception can override that (its pixels could hold a
name). Pixel noise, all edges, is what it stops: every block is a candidate and Tesseract would read the whole
image for a minute or more. An image of which at least ``MAX_DENSE_FRACTION`` of the blocks are candidates, over
``MAX_DENSE_PIXELS``, is refused before any OCR (``burned_in_text_uncheckable``); the budget bounds the rest (a
640 x 480 photograph of noise is read in time, finds nothing and may be stored with the not-a-fundus exception).
``tests/benchmarks/bench_deidentify.py`` prints the cost per photograph, misses, false
refusals and the noise photograph's outcome. OCR works on a
copy whose longer side is at most ``OCR_MAX_SIDE`` px. When Tesseract is not installed the check fails closed: the
upload is refused, never passed unchecked. ``read_words`` (whole image, several Tesseract passes, no
pre-screen) is the thorough reading the PHI canary tests use to look at what was stored.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image
from scipy import ndimage

from trials.uploads.errors import UploadRejected

__all__ = [
    "ALL_PASSES",
    "BlankedRim",
    "MIN_CONFIDENCE",
    "FieldOfView",
    "OcrBudget",
    "TextRegion",
    "blank_outside_field",
    "blanked_rim",
    "find_field_of_view",
    "find_text",
    "kept_mask",
    "read_words",
    "refuse_burned_in_text",
    "text_candidates",
]

MIN_CONFIDENCE: Final = 70.0  # Tesseract word confidence (0-100); stamped text reads at 90+, vessel noise below 65
OCR_MAX_SIDE: Final = 2048
OCR_BUDGET_S: Final = 10.0  # seconds of wall time for a whole file's OCR; a photograph needs well under one
READ_PASS_S: Final = 60.0  # per whole-image pass of read_words when no budget is given
EDGE_LEVEL: Final = 48  # 0-255 across two pixels in some channel: the edge of a stroke (a retina's edges stay below)
BLOCK: Final = 16  # px, at OCR size: the grid of the text-candidate search
MIN_BLOCK_EDGES: Final = 10  # strong-edge pixels that make a block a text candidate
MAX_DENSE_FRACTION: Final = 0.9  # of all blocks candidates (noise; a phone screenshot has 0.76), and
MAX_DENSE_PIXELS: Final = 1_000_000  # candidate pixels at OCR size: refused unread (a smaller one is read in time)
SMALL_CROP_PX: Final = 96  # crops this tall or less are read at CROP_UPSCALE times their size (small type)
CROP_UPSCALE: Final = 2
_RIM_PX: Final = 4  # px at OCR size (plus _MARGIN of the radius) either side of the fitted circle: its edge, no stroke
_SEAM_PX: Final = 3  # px at OCR size either side of an edge the search leaves out (no type fits in it): the edge
# blanking leaves, or where nothing was blanked, the fitted circle (the field's own edge, within 2 px of it on the HRF
# photographs, apart from their camera's notch)
_GAP: Final = 24  # px of white between crops on the page sent to Tesseract
_SHEET_PX: Final = 4096  # px: at most this tall a sheet of crops per Tesseract process (a taller one of a letterboxed
# photograph's field edges, 11,808 px, read nothing of the type on it that a 6,000 px part of it read)
_DARK_LEVEL: Final = 24  # 0-255: fundus backgrounds sit below this; the dimmest periphery of the field above it
_CHORD_FRACTION: Final = 0.2  # of the image's longer side: a straight run of the field's outline this long is a cut
_CUT_REACH: Final = 3  # px at the field mask's scale: how far inside the field's extent a cut's line may lie
_BODY_OPENING: Final = 4  # 3 x 3 openings at OCR size: what is under 9 px wide is not the field (no circle fitted)
_OPENING: Final = 2  # 3 x 3 openings of the field's mask (<= 1023 px a side): under 5 px wide (type) is not field
_MARGIN: Final = 0.01  # of the radius, with _RIM_PX: the rim, blanked with the border (the field's edge is in it)


@dataclass(frozen=True)
class FieldOfView:
    """The fitted circular field of view, in pixels of the full image. ``cut``: where a frame cuts the field with
    straight lines (a letterboxed photograph), the field's extent (left, top, right, bottom); None when it does not."""

    centre_x: float
    centre_y: float
    radius: float
    cut: tuple[float, float, float, float] | None = None


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


class _OcrTimedOut(UploadRejected):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The photograph could not be checked for burned-in text within {seconds:g} seconds (it has too much fine "
            "detail, like noise or a page of small print), so it was not accepted: text in it could show the "
            "patient's name. Upload the photograph as exported by the camera; if it is one, please tell the trial's "
            "data manager.",
            "burned_in_text_timeout",
        )


class _Uncheckable(UploadRejected):
    def __init__(self) -> None:
        super().__init__(
            "The image has sharp fine detail all over it (like noise), too much for it to be checked for burned-in "
            "text, so it was not accepted: text in it could show the patient's name. Upload the photograph as "
            "exported by the camera.",
            "burned_in_text_uncheckable",
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
    # Less what is under 5 px wide at this scale (``_OPENING``), before holes are filled: type that touches the
    # field, in a letterbox bar or over the field's edge, would otherwise join it (its letters filled solid), and
    # neither a straight cut nor the circle would be found in the outline.
    bright = ndimage.binary_opening(bright, structure=np.ones((3, 3), dtype=bool), iterations=_OPENING)
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
    # Where a frame cuts the field (a photograph letterboxed into black bars): long straight runs of the outline
    # along a row or a column, a chord and not the circle. A circle's own outline runs at most about sqrt(2r) px
    # along a row at its top.
    chord = _CHORD_FRACTION * max(field.shape)
    ys_, xs_ = np.nonzero(field)
    # (top, bottom, left, right) of the field, or of its cut: within ``_CUT_REACH`` px of the field's extreme row or
    # column, the one with the longest run of outline, where what is left of type standing on the cut (its letters'
    # feet, wider than the opening takes) reaches past it.
    extent = [int(ys_.min()), int(ys_.max()), int(xs_.min()), int(xs_.max())]
    cut = False
    for side, (counts, inward) in enumerate(
        ((edge.sum(axis=1), 1), (edge.sum(axis=1), -1), (edge.sum(axis=0), 1), (edge.sum(axis=0), -1))
    ):
        reach = [
            extent[side] + inward * k for k in range(_CUT_REACH + 1) if 0 <= extent[side] + inward * k < len(counts)
        ]
        line = max(reach, key=lambda index: counts[index])
        if counts[line] < chord:
            continue
        cut = True
        extent[side] = line
        beyond = slice(None, line + 2) if inward > 0 else slice(line - 1, None)
        if side < 2:
            edge[beyond, :] = False
        else:
            edge[:, beyond] = False
    top, bottom, left, right = extent
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
    band = np.zeros_like(field)  # the circle within the field's extent: what a frame cut off is not expected lit
    band[top : bottom + 1, left : right + 1] = True
    inside &= band
    # A circle must describe the field: most of the field inside it and most of it (within the image) filled.
    if (field & inside).sum() < 0.97 * field.sum() or (field & inside).sum() < 0.9 * inside.sum():
        return None
    box = (float(left * step), float(top * step), float((right + 1) * step - 1), float((bottom + 1) * step - 1))
    return FieldOfView(centre_x=cx * step, centre_y=cy * step, radius=r * step, cut=box if cut else None)


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


def _kept_edges(shape: tuple[int, ...], fov: FieldOfView, scale: float) -> tuple[float, float]:
    """Where blanking stops, in pixels of an image of ``shape`` (the full image downscaled by ``scale``): the radius
    it keeps, and how far inside a cut's line. Both leave out the field's rim (``_RIM_PX`` at OCR size, plus
    ``_MARGIN`` of the radius inside the circle), where its own edge lies."""
    rim = _RIM_PX * max(1.0, max(shape[:2]) * scale / OCR_MAX_SIDE) / scale  # _RIM_PX at OCR size
    return fov.radius * (1 - _MARGIN) / scale - rim, rim


def kept_mask(shape: tuple[int, ...], fov: FieldOfView, scale: float = 1.0) -> np.ndarray:
    """What blanking keeps of an image of ``shape`` (the full image downscaled by ``scale``): the pixels within the
    fitted circle, less its rim, and, where a frame cuts the field (``fov.cut``), within the field's extent too,
    less as much. The text search reads exactly these pixels, so nothing stored goes unsearched: text in a letterbox
    bar inside the circle's reach is blanked with the bar, and text over the field's rim with the rim."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    r, inset = _kept_edges(shape, fov, scale)
    kept: np.ndarray = (xx - fov.centre_x / scale) ** 2 + (yy - fov.centre_y / scale) ** 2 <= r * r
    if fov.cut is not None:
        left, top, right, bottom = (v / scale for v in fov.cut)
        kept &= (xx >= left + inset) & (xx <= right - inset) & (yy >= top + inset) & (yy <= bottom - inset)
    return kept


def _rim_reach(shape: tuple[int, ...], fov: FieldOfView, scale: float, left: int = 0, top: int = 0) -> np.ndarray:
    """Of the pixels at (``left``, ``top``) of an image of ``shape`` (the full image downscaled by ``scale``): those
    within the fitted circle plus ``_MARGIN`` of its radius and 2 px (and within a cut field's extent), which take in
    the field's own edge and what is written over it."""
    yy, xx = np.ogrid[top : top + shape[0], left : left + shape[1]]
    r = (fov.radius * (1 + _MARGIN) + 2) / scale
    reach: np.ndarray = (xx - fov.centre_x / scale) ** 2 + (yy - fov.centre_y / scale) ** 2 <= r * r
    if fov.cut is not None:
        cut_left, cut_top, cut_right, cut_bottom = (v / scale for v in fov.cut)
        reach = reach & (xx >= cut_left) & (xx <= cut_right) & (yy >= cut_top) & (yy <= cut_bottom)
    return reach


@dataclass(frozen=True)
class BlankedRim:
    """What blanking takes of the field's rim and just beyond it (``_rim_reach``): flat indices of pixels of the full
    image and their RGB values. The search reads a crop it finds at the blanked edge with them put back, so that type
    written over the field's edge, which blanking cuts, is read whole and refuses the file rather than being stored
    in part, unread."""

    indices: np.ndarray
    values: np.ndarray


def blanked_rim(rgb: np.ndarray, fov: FieldOfView) -> BlankedRim:
    """The pixels of ``rgb`` (HxWx3 uint8) that ``blank_outside_field`` takes of the field's rim (``BlankedRim``)."""
    taken = np.flatnonzero(_rim_reach(rgb.shape, fov, 1.0) & ~kept_mask(rgb.shape, fov))
    return BlankedRim(indices=taken, values=rgb.reshape(-1, 3)[taken])


def blank_outside_field(rgb: np.ndarray, fov: FieldOfView) -> tuple[np.ndarray, int]:
    """A copy with every pixel outside the field of view and on its rim (see ``kept_mask``) black, and how many were
    not black before."""
    outside = ~kept_mask(rgb.shape, fov)
    changed = int((outside & (rgb.max(axis=2) > 0)).sum())
    out = rgb.copy()
    out[outside] = 0
    return out, changed


# --------------------------------------------------------------------------------------------------------------
# OCR
# --------------------------------------------------------------------------------------------------------------
class OcrBudget:
    """One allowance of Tesseract time for all the OCR of a file (every frame, every search): ``OCR_BUDGET_S`` by
    default. Only the wall time of Tesseract processes counts, from the start of the first: decoding, the fundus
    gate and the candidate search before it do not, so a large file on a loaded server is not refused for them. A
    file whose search does not finish within it is refused (``burned_in_text_timeout``)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = OCR_BUDGET_S if seconds is None else seconds
        self.spent = 0.0

    def remaining(self) -> float:
        left = self.seconds - self.spent
        if left <= 0:
            raise _OcrTimedOut(self.seconds)
        return left

    def charge(self, seconds: float) -> None:
        self.spent += seconds


def _tesseract() -> str:
    path = shutil.which("tesseract")
    if path is None:
        raise _OcrUnavailable()
    return path


def _ocr_scale(size: tuple[int, int]) -> float:
    return max(1.0, max(size) / OCR_MAX_SIDE)


def _downscaled(img: Image.Image, scale: float) -> Image.Image:
    work = img.convert("RGB") if img.mode != "RGB" else img
    if scale > 1:
        work = work.resize(
            (max(1, round(work.width / scale)), max(1, round(work.height / scale))), Image.Resampling.LANCZOS
        )
    return work


# Whole-image passes: (image, Tesseract thresholding method). Tesseract's default global Otsu threshold reads text
# on a plain dark background (a camera's text panel) but loses white text on the bright red retina once a black
# surround is in the picture; Sauvola's local threshold reads that but misses text on flat black. Yellow and white
# text differ from the red retina mostly in hue, which Tesseract's greyscale conversion loses, so the green channel
# gets a pass of its own. ``read_words`` runs them all: the thorough reading the PHI canary tests use to look at what
# was stored. The upload check (``find_text``) reads candidate crops instead (see the module docstring).
COLOUR_OTSU: Final = ("colour", "0")
COLOUR_SAUVOLA: Final = ("colour", "2")
GREEN_SAUVOLA: Final = ("green", "2")
ALL_PASSES: Final = (COLOUR_OTSU, COLOUR_SAUVOLA, GREEN_SAUVOLA)


def read_words(
    img: Image.Image, *, passes: tuple[tuple[str, str], ...] = ALL_PASSES, budget: OcrBudget | None = None
) -> list[tuple[str, float, TextRegion]]:
    """Every word Tesseract reads anywhere in ``img`` in any of ``passes``, unfiltered: (text, confidence 0-100, box
    in full-image pixels). Slow (the whole image, several passes); the upload check uses ``find_text``. Without a
    ``budget``, each pass may take ``READ_PASS_S`` seconds (this reading checks what was stored; no upload waits)."""
    budget = budget or OcrBudget(READ_PASS_S * len(passes))
    scale = _ocr_scale(img.size)
    work = _downscaled(img, scale)
    words: list[tuple[str, float, TextRegion]] = []
    for channel, method in passes:
        image = work if channel == "colour" else work.getchannel("G")
        for text, confidence, (left, top, width, height) in _tesseract_words(image, method, budget):
            words.append((text, confidence, _box(left, top, width, height, 0, 0, scale)))
    return words


def _box(left: int, top: int, width: int, height: int, x0: int, y0: int, scale: float) -> TextRegion:
    return TextRegion(
        left=round((left + x0) * scale),
        top=round((top + y0) * scale),
        width=max(1, round(width * scale)),
        height=max(1, round(height * scale)),
    )


def _tesseract_words(
    image: Image.Image, method: str, budget: OcrBudget
) -> list[tuple[str, float, tuple[int, int, int, int]]]:
    """One Tesseract process on ``image`` (sparse text, ``--psm 11``): (text, confidence, (left, top, width,
    height)) in the pixels of ``image``. Killed when the file's budget runs out."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    # One thread: uploads run side by side in workers; OpenMP threads would only fight over the cores.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    command = [_tesseract(), "stdin", "stdout", "--psm", "11", "-c", f"thresholding_method={method}", "tsv"]
    timeout = budget.remaining()
    started = time.monotonic()
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments, the image goes through stdin
            command, input=buffer.getvalue(), capture_output=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise _OcrTimedOut(budget.seconds) from None
    except OSError:
        raise _OcrUnavailable() from None
    finally:
        budget.charge(time.monotonic() - started)
    if done.returncode != 0:
        raise _OcrUnavailable()
    words: list[tuple[str, float, tuple[int, int, int, int]]] = []
    for line in done.stdout.decode("utf-8", "replace").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) != 12 or not fields[11].strip():
            continue
        try:
            confidence = float(fields[10])
            left, top, width, height = (int(v) for v in fields[6:10])
        except ValueError:
            continue
        words.append((fields[11].strip(), confidence, (left, top, width, height)))
    return words


# --------------------------------------------------------------------------------------------------------------
# Text candidates
# --------------------------------------------------------------------------------------------------------------
def _masks(shape: tuple[int, int], field: FieldOfView | None, blanked: bool, scale: float) -> tuple[np.ndarray, ...]:
    """Where edges count and where ink can be. When the rest was blanked: everywhere but ``_SEAM_PX`` either side of
    the edge of what blanking kept (``kept_mask``), and what it kept. When nothing was blanked: everywhere but as
    much either side of the fitted circle (the field's edge, no stroke; type over it is searched and read), and
    everywhere."""
    everywhere = np.ones(shape, dtype=bool)
    if field is None:
        return everywhere, everywhere
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    distance = np.sqrt((xx - field.centre_x / scale) ** 2 + (yy - field.centre_y / scale) ** 2)
    radius = field.radius / scale
    if blanked:
        kept_radius, inset = _kept_edges(shape, field, scale)
        edge = np.abs(distance - kept_radius) <= _SEAM_PX
        outer, inner = -inset + _SEAM_PX, -inset - _SEAM_PX
    else:
        edge = np.abs(distance - radius) <= _SEAM_PX
        outer, inner = _RIM_PX, -_RIM_PX
    if field.cut is not None:  # the straight edges where a frame cuts the field are not strokes either
        left, top, right, bottom = (v / scale for v in field.cut)

        def box(grow: float) -> np.ndarray:
            return (xx >= left - grow) & (xx <= right + grow) & (yy >= top - grow) & (yy <= bottom + grow)

        edge |= box(outer) & ~box(inner)
    return ~edge, kept_mask(shape, field, scale) if blanked else everywhere


def _strong_edges(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels where some channel changes by at least ``EDGE_LEVEL`` across two pixels, horizontally or vertically."""
    a = rgb.astype(np.int16)
    edges = np.zeros(rgb.shape[:2], dtype=bool)
    edges[:, 1:-1] = (np.abs(a[:, 2:] - a[:, :-2]) >= EDGE_LEVEL).any(axis=2)
    edges[1:-1, :] |= (np.abs(a[2:] - a[:-2]) >= EDGE_LEVEL).any(axis=2)
    edges &= valid
    return edges


def _dense_blocks(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per ``BLOCK`` px block: does it hold at least ``MIN_BLOCK_EDGES`` strong-edge pixels?"""
    height, width = rgb.shape[:2]
    edges = _strong_edges(rgb, valid)
    rows, cols = -(-height // BLOCK), -(-width // BLOCK)
    padded = np.zeros((rows * BLOCK, cols * BLOCK), dtype=np.int32)
    padded[:height, :width] = edges
    counts: np.ndarray = padded.reshape(rows, BLOCK, cols, BLOCK).sum(axis=(1, 3)) >= MIN_BLOCK_EDGES
    return counts


def text_candidates(rgb: np.ndarray, valid: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (left, top, right, bottom) of ``rgb`` that may hold text: ``BLOCK`` px blocks with at least
    ``MIN_BLOCK_EDGES`` strong-edge pixels, grouped with their neighbours, plus a block of margin."""
    return _grouped(_dense_blocks(rgb, valid), rgb.shape[:2])


def _grouped(dense: np.ndarray, shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    height, width = shape[:2]
    if not dense.any():
        return []
    grouped = ndimage.binary_dilation(dense, structure=np.ones((3, 3), dtype=bool))
    labels, _count = ndimage.label(grouped)
    boxes = []
    for found in ndimage.find_objects(labels):
        if found is None:
            continue
        ys, xs = found
        boxes.append((xs.start * BLOCK, ys.start * BLOCK, min(width, xs.stop * BLOCK), min(height, ys.stop * BLOCK)))
    return boxes


def _otsu(values: np.ndarray) -> tuple[int, float]:
    """Otsu's threshold of uint8 ``values`` and its separability (between-class over total variance, 0-1)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 128, 0.0
    levels = np.arange(256, dtype=np.float64)
    weight0 = np.cumsum(hist)
    mass0 = np.cumsum(hist * levels)
    mean = mass0[-1] / total
    variance = float((hist * (levels - mean) ** 2).sum() / total)
    weight1 = total - weight0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean * weight0 - mass0) ** 2 / (weight0 * weight1)
    between[~np.isfinite(between)] = 0
    threshold = int(between.argmax())
    return threshold, float(between[threshold] / total / variance) if variance > 0 else 0.0


def _binarised(crop: np.ndarray, valid: np.ndarray) -> list[np.ndarray]:
    """Versions of an RGB crop for Tesseract: its most separable colour channel cut at Otsu's threshold (over the
    valid pixels), the smaller class (the strokes) black on white; and that channel and the luminance as they are,
    for Tesseract's local (Sauvola) threshold, where a bright optic disc or a vessel shares the crop. Invalid pixels
    (the blanked border) take the crop's median, so that they make no edge."""
    luminance = (crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.uint8)
    planes = [luminance, crop[..., 0], crop[..., 1], crop[..., 2]]
    if not valid.any():
        return []
    scored = [_otsu(plane[valid]) for plane in planes]
    best = max(range(1, 4), key=lambda index: scored[index][1])
    high = planes[best] > scored[best][0]
    ink = high if (high & valid).sum() * 2 < valid.sum() else ~high
    cut = np.full(crop.shape[:2], 255, dtype=np.uint8)
    cut[ink & valid] = 0
    out = [cut]
    for index in (best, 0):
        plane = planes[index].copy()
        plane[~valid] = int(np.median(plane[valid]))
        out.append(plane)
    return out


def _dark_surround(crop: np.ndarray, field: FieldOfView, scale: float, left: int, top: int) -> np.ndarray:
    """Of a crop at (``left``, ``top``) of an unblanked image: its dark surround outside the fitted circle when it
    holds some of the field too (type over the field's edge), else nothing. Left out of the crop's binarisation, so
    that the channel that separates the type from the retina is chosen, not the one that separates the retina from
    the dark (white type over a red retina's edge was once read in red, lost on the retina, and stored unread)."""
    yy, xx = np.ogrid[top : top + crop.shape[0], left : left + crop.shape[1]]
    radius = field.radius / scale
    outside = (xx - field.centre_x / scale) ** 2 + (yy - field.centre_y / scale) ** 2 > radius * radius
    if outside.all() or not outside.any():
        return np.zeros(crop.shape[:2], dtype=bool)
    dark: np.ndarray = outside & (crop.max(axis=2) <= _DARK_LEVEL)
    return dark


def find_text(
    img: Image.Image,
    *,
    blanked_outside: FieldOfView | None = None,
    rim: BlankedRim | None = None,
    budget: OcrBudget | None = None,
) -> list[TextRegion]:
    """Boxes of the words in ``img`` that count as text (see the module docstring), in full-image pixels.
    ``blanked_outside``: the field of view outside which ``img`` was blanked (else one is fitted here, so that its
    rim is not taken for a stroke); ``rim``: what blanking took of its rim (``blanked_rim``), put back to read a crop
    found at the blanked edge."""
    budget = budget or OcrBudget()
    scale = _ocr_scale(img.size)
    rgb = np.asarray(_downscaled(img, scale))
    field = blanked_outside
    if field is None:
        fitted = find_field_of_view(rgb)
        field = (
            None
            if fitted is None
            else FieldOfView(
                fitted.centre_x * scale,
                fitted.centre_y * scale,
                fitted.radius * scale,
                None
                if fitted.cut is None
                else (fitted.cut[0] * scale, fitted.cut[1] * scale, fitted.cut[2] * scale, fitted.cut[3] * scale),
            )
        )
    edge_valid, valid = _masks(rgb.shape[:2], field, blanked_outside is not None, scale)
    dense = _dense_blocks(rgb, edge_valid)
    if dense.mean() >= MAX_DENSE_FRACTION and dense.sum() * BLOCK * BLOCK >= MAX_DENSE_PIXELS:
        raise _Uncheckable()  # large noise, not a photograph with a stamp: no OCR would finish in time
    boxes = _grouped(dense, rgb.shape)
    if not boxes:
        return []
    body = _bright_body(rgb) if field is None else None
    # Every version of every crop on a page, one above the other: one Tesseract process per ``_SHEET_PX`` of pages.
    pages: list[tuple[np.ndarray, int, int, int]] = []  # (page, x0, y0 of the crop in rgb, upscale)
    restored: np.ndarray | None = None  # rgb with the blanked rim put back, when a crop needs it
    for left, top, right, bottom in boxes:
        crop, inside = rgb[top:bottom, left:right], valid[top:bottom, left:right]
        versions = _binarised(crop, inside)
        if field is not None and blanked_outside is None:
            # Without the dark surround too (type over the field's edge), not instead: type on the surround beside
            # a sliver of the field is the larger class once the surround is left out, and only the crop whole
            # reads it.
            dark = _dark_surround(crop, field, scale, left, top)
            if dark.any():
                versions += _binarised(crop, inside & ~dark)
        if body is not None:  # no circle fits the field: a crop of its edge is read without the field too
            part = body[top:bottom, left:right]
            if part.any() and not part.all():
                versions += _binarised(crop, inside & ~part)
        if rim is not None and field is not None and not inside.all():  # at the blanked edge: read it whole too
            if restored is None:
                restored = _restored(img, rim, scale)
            whole = restored[top:bottom, left:right]
            reach = _rim_reach(whole.shape, field, scale, left, top) & ~_dark_surround(whole, field, scale, left, top)
            versions += _binarised(whole, reach)
        up = CROP_UPSCALE if bottom - top <= SMALL_CROP_PX else 1
        for page in versions:
            if up > 1:
                page = np.kron(page, np.ones((up, up), dtype=np.uint8))
            pages.append((page, left, top, up))
    regions: list[TextRegion] = []
    sheets: list[list[tuple[np.ndarray, int, int, int]]] = []
    height = 0
    for item in pages:
        if not sheets or height + item[0].shape[0] + _GAP > _SHEET_PX:
            sheets.append([])
            height = _GAP
        sheets[-1].append(item)
        height += item[0].shape[0] + _GAP
    for sheet_pages in sheets:
        regions += _read_sheet(sheet_pages, scale, budget)
    return regions


def _read_sheet(pages: list[tuple[np.ndarray, int, int, int]], scale: float, budget: OcrBudget) -> list[TextRegion]:
    """One Tesseract process on ``pages`` (page, x0, y0 of its crop at OCR size, upscale) stacked on one sheet:
    the boxes of the words on them that count as text, in full-image pixels."""
    sheet_width = max(page.shape[1] for page, *_ in pages) + 2 * _GAP
    sheet_height = sum(page.shape[0] + _GAP for page, *_ in pages) + _GAP
    sheet = np.full((sheet_height, sheet_width), 255, dtype=np.uint8)
    placed = []  # (y on the sheet, page height, x0, y0, upscale)
    y = _GAP
    for page, x0, y0, up in pages:
        sheet[y : y + page.shape[0], _GAP : _GAP + page.shape[1]] = page
        placed.append((y, page.shape[0], x0, y0, up))
        y += page.shape[0] + _GAP
    regions = []
    for word, confidence, (left, top, width, height) in _tesseract_words(Image.fromarray(sheet), "2", budget):
        if not _is_text(word, confidence):
            continue
        middle = top + height / 2
        for y_sheet, page_height, x0, y0, up in placed:
            if y_sheet <= middle < y_sheet + page_height:
                regions.append(
                    _box((left - _GAP) // up, (top - y_sheet) // up, -(-width // up), -(-height // up), x0, y0, scale)
                )
                break
    return regions


def _bright_body(rgb: np.ndarray) -> np.ndarray:
    """Of an image where no circle fits a field of view (an oval field, a montage): its largest bright region, less
    what is under 9 px wide (``_BODY_OPENING``: type over its edge). A crop of its edge is also read without it, so
    that type over the edge is read on the dark alone (in the crop whole, the retina is the larger class and the
    type is lost on it, and Tesseract takes type joined to the field for part of one picture)."""
    bright: np.ndarray = ndimage.binary_opening(
        rgb.max(axis=2) > _DARK_LEVEL, structure=np.ones((3, 3), dtype=bool), iterations=_BODY_OPENING
    )
    labels, count = ndimage.label(bright)
    if count == 0:
        return bright
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body: np.ndarray = ndimage.binary_fill_holes(labels == int(sizes.argmax()))
    return body


def _restored(img: Image.Image, rim: BlankedRim, scale: float) -> np.ndarray:
    """``img`` at OCR size with the pixels blanking took of the rim put back."""
    full = np.array(img.convert("RGB"))
    full.reshape(-1, 3)[rim.indices] = rim.values
    return np.asarray(_downscaled(Image.fromarray(full), scale))


def _is_text(word: str, confidence: float) -> bool:
    alnum = sum(c.isalnum() for c in word)
    return confidence >= MIN_CONFIDENCE and alnum >= 3 and alnum >= 0.6 * len(word)


def refuse_burned_in_text(
    img: Image.Image,
    *,
    where: str,
    blanked_outside: FieldOfView | None = None,
    rim: BlankedRim | None = None,
    budget: OcrBudget | None = None,
) -> None:
    """Raise UploadRejected naming the region if OCR finds text in ``img`` (see ``find_text``). ``where`` says what
    was searched. Also refuses when the search does not finish within ``budget``."""
    regions = find_text(img, blanked_outside=blanked_outside, rim=rim, budget=budget)
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
