"""Is an image plausibly a fundus photograph, and is it gradable? Pure and fast: numpy on a copy whose longer side
is at most ``GATE_SIDE`` px (a few milliseconds per photograph).

**Plausibility** (``assess_fundus``), three checks, all needed:

* *field of view*: a bright disc on a dark surround. ``burned_in_text.find_field_of_view`` fits a circle to the
  largest bright region, leaving out straight runs of its outline where the frame or the black bars of a
  letterboxed export cut it (an HRF photograph letterboxed to 4:3 passes); a page screenshot, a document or a text
  image (bright background, or scattered bright glyphs, letterboxed or not) has none;
* *colour*: inside the field the red channel dominates (the retina is red-orange under white light): mean red at
  least ``MIN_RED_OVER_GREEN`` times mean green and above mean blue. Monochrome and red-free photographs (all
  channels equal) skip this check;
* *aspect ratio*: width over height between ``ASPECT_RANGE`` (fundus cameras write 1:1 to 3:2; a text panel
  beside the field is allowed).

**Gradability** (``assess_gradability``), measured inside the field of view:

* *focus*: variance of the Laplacian of the green channel (the channel with the retinal detail), at the gate size;
  below ``MIN_FOCUS`` the photograph is blurred;
* *exposure*: the fraction of clipped (any channel at 250 or more) pixels above ``MAX_CLIPPED``, or of dark
  (luminance under ``DARK_LEVEL``) pixels above ``MAX_DARK``;
* *field*: the fraction of the image the field of view covers (the lit pixels when no circle fits), under
  ``MIN_FIELD`` is too small to grade; an image without a round field is not graded as a photograph either.

The thresholds were set on the shipped HRF photographs (all plausible and gradable, ``tests/trials/
test_fundus_gate.py``) against screenshots, text images and blurred, over- and under-exposed copies of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from PIL import Image

from trials.uploads.burned_in_text import FieldOfView, find_field_of_view

__all__ = [
    "NOT_FUNDUS_CODE",
    "FundusCheck",
    "Gradability",
    "assess_fundus",
    "assess_gradability",
    "gate_array",
]

GATE_SIDE: Final = 512
ASPECT_RANGE: Final = (0.75, 2.0)
MIN_RED_OVER_GREEN: Final = 1.2
MONOCHROME_SPREAD: Final = 4.0  # mean |R-G| + |G-B| under this: a monochrome or red-free photograph
MIN_FOCUS: Final = 4.0
MAX_CLIPPED: Final = 0.10
DARK_LEVEL: Final = 20
MAX_DARK: Final = 0.35
MIN_FIELD: Final = 0.25
FIELD_LEVEL: Final = 24  # 0-255, as burned_in_text: above it a pixel is part of the lit field
NOT_FUNDUS_CODE: Final = "not_fundus"


@dataclass(frozen=True)
class FundusCheck:
    """The plausibility verdict; ``reasons`` say in plain words why an image failed (empty when plausible)."""

    plausible: bool
    reasons: tuple[str, ...]
    aspect: float
    field_of_view: bool
    red_over_green: float | None  # None for monochrome images

    def as_dict(self) -> dict[str, Any]:
        return {
            "plausible": self.plausible,
            "reasons": list(self.reasons),
            "aspect": round(self.aspect, 3),
            "field_of_view": self.field_of_view,
            "red_over_green": None if self.red_over_green is None else round(self.red_over_green, 3),
        }


@dataclass(frozen=True)
class Gradability:
    gradable: bool
    reasons: tuple[str, ...]
    focus: float
    clipped_fraction: float
    dark_fraction: float
    field_fraction: float
    thresholds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gradable": self.gradable,
            "reasons": list(self.reasons),
            "focus": round(self.focus, 2),
            "clipped_fraction": round(self.clipped_fraction, 4),
            "dark_fraction": round(self.dark_fraction, 4),
            "field_fraction": round(self.field_fraction, 4),
            "thresholds": self.thresholds,
        }


def gate_array(image: Image.Image) -> np.ndarray:
    """The image as HxWx3 uint8 with its longer side at most ``GATE_SIDE`` (what both assessments take)."""
    img = image if image.mode == "RGB" else image.convert("RGB")
    if max(img.size) > GATE_SIDE:
        img = img.copy()
        img.thumbnail((GATE_SIDE, GATE_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _disc(shape: tuple[int, ...], fov: FieldOfView, shrink: float = 1.0) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    r = fov.radius * shrink
    return (xx - fov.centre_x) ** 2 + (yy - fov.centre_y) ** 2 <= r * r


def assess_fundus(rgb: np.ndarray) -> FundusCheck:
    """Plausibility of a fundus photograph (``rgb`` from ``gate_array``)."""
    height, width = rgb.shape[:2]
    aspect = width / height
    reasons: list[str] = []
    low, high = ASPECT_RANGE
    if not low <= aspect <= high:
        reasons.append(f"its shape ({width}:{height}) is not a fundus camera's (width over height {low:g} to {high:g})")
    fov = find_field_of_view(rgb)
    if fov is None:
        reasons.append("it has no circular field of view (a bright round retina on a dark surround)")
    region = _disc(rgb.shape, fov) if fov is not None else np.ones(rgb.shape[:2], dtype=bool)
    means = rgb[region].reshape(-1, 3).mean(axis=0) if region.any() else np.zeros(3)
    red, green, blue = (float(v) for v in means)
    spread = float(np.abs(rgb[..., 0].astype(np.int16) - rgb[..., 1]).mean())
    spread += float(np.abs(rgb[..., 1].astype(np.int16) - rgb[..., 2]).mean())
    ratio: float | None = None
    if spread >= MONOCHROME_SPREAD:
        ratio = red / max(green, 1.0)
        if ratio < MIN_RED_OVER_GREEN or red <= blue:
            reasons.append("its colours are not a retina's (red-orange)")
    return FundusCheck(
        plausible=not reasons,
        reasons=tuple(reasons),
        aspect=aspect,
        field_of_view=fov is not None,
        red_over_green=ratio,
    )


def _laplacian_variance(grey: np.ndarray, inside: np.ndarray) -> float:
    g = grey.astype(np.float32)
    lap = np.zeros_like(g)
    lap[1:-1, 1:-1] = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    inner = inside.copy()
    inner[0, :] = inner[-1, :] = inner[:, 0] = inner[:, -1] = False
    values = lap[inner]
    return float(values.var()) if values.size else 0.0


def assess_gradability(rgb: np.ndarray) -> Gradability:
    """Focus, exposure and field of a photograph (``rgb`` from ``gate_array``), measured inside its field of view
    (the whole image when none is found)."""
    fov = find_field_of_view(rgb)
    if fov is not None:
        inside = _disc(rgb.shape, fov, shrink=0.9)  # the rim of the field is dim and sharp-edged on every camera
        field_fraction = float(_disc(rgb.shape, fov).mean())
    else:  # no circle fits: the lit part of the image stands in for the field
        inside = np.ones(rgb.shape[:2], dtype=bool)
        field_fraction = float((rgb.max(axis=2) > FIELD_LEVEL).mean())
    pixels = rgb[inside].astype(np.float32)
    if not pixels.size:
        pixels = rgb.reshape(-1, 3).astype(np.float32)
    luminance = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    clipped = float((pixels.max(axis=1) >= 250).mean())
    dark = float((luminance < DARK_LEVEL).mean())
    monochrome = float(np.abs(rgb[..., 0].astype(np.int16) - rgb[..., 1]).mean()) < MONOCHROME_SPREAD / 2
    grey = rgb[..., 0] if monochrome else rgb[..., 1]
    focus = _laplacian_variance(grey, inside)
    reasons: list[str] = []
    if focus < MIN_FOCUS:
        reasons.append("out of focus (too little fine detail)")
    if clipped > MAX_CLIPPED:
        reasons.append(f"overexposed ({clipped:.0%} of the field is washed out)")
    if dark > MAX_DARK:
        reasons.append(f"underexposed ({dark:.0%} of the field is too dark)")
    if field_fraction < MIN_FIELD:
        reasons.append(f"field of view too small ({field_fraction:.0%} of the image)")
    elif fov is None:
        reasons.append("no round field of view found")
    return Gradability(
        gradable=not reasons,
        reasons=tuple(reasons),
        focus=focus,
        clipped_fraction=clipped,
        dark_fraction=dark,
        field_fraction=field_fraction,
        thresholds={
            "min_focus": MIN_FOCUS,
            "max_clipped": MAX_CLIPPED,
            "max_dark": MAX_DARK,
            "min_field": MIN_FIELD,
        },
    )
