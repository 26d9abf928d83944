"""Overlays shown with a prediction: where a network looked, drawn on a preview of the photograph (PNG).

Pure numpy/Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


def attention_overlay(
    preview: Image.Image, attention: np.ndarray, boxes: Sequence[Sequence[float]], original_size: tuple[int, int]
) -> bytes:
    """The attention map as a cyan heat layer over the photograph, with the zoomed regions outlined (PNG)."""
    heat = Image.fromarray((np.clip(attention, 0, 1) * 255).astype(np.uint8)).resize(preview.size)
    level = np.asarray(heat, dtype=np.float32) / 255.0
    base = np.asarray(preview.convert("RGB"), dtype=np.float32)
    # Cyan stands out on the red-orange fundus. The map is min-max normalised, so its lower half is the
    # background of an image; only the upper half is coloured, or the whole fundus would turn cyan.
    heat_colour = np.zeros_like(base)
    heat_colour[..., 1] = 255.0
    heat_colour[..., 2] = 255.0
    alpha = (0.7 * np.clip((level - 0.5) / 0.5, 0, 1))[..., None]
    blended = Image.fromarray((base * (1 - alpha) + heat_colour * alpha).clip(0, 255).astype(np.uint8))
    return region_overlay(blended, boxes, original_size)


def region_overlay(preview: Image.Image, boxes: Sequence[Sequence[float]], original_size: tuple[int, int]) -> bytes:
    """The photograph with the regions a network read outlined and numbered (PNG)."""
    image = preview.convert("RGB")
    draw = ImageDraw.Draw(image)
    scale = image.size[0] / max(original_size[0], 1)
    for n, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale, y1 * scale], outline=(255, 230, 0), width=2)
        draw.text((x0 * scale + 3, y0 * scale + 2), str(n), fill=(255, 230, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
