"""One decoded frame of a DICOM image, for previews and network input. Not de-identification: inference uses it
on files ``deidentify_dicom`` already produced."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydicom.pixels import pixel_array

from trials.uploads.dicom_dataset import DEFAULT_MAX_PIXELS, _check_image, _int, _read, _transfer_syntax


def frame_image(data: bytes, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode one frame of a DICOM image to an 8-bit PIL image (L or RGB), after the pixel-budget check.

    Precondition: ``data`` is a file ``deidentify_dicom`` produced or accepted.
    """
    ds = _read(data)
    syntax = _transfer_syntax(ds)
    _, _, frames, _ = _check_image(ds, syntax, max_pixels=max_pixels, allow_missing_burned_in_annotation=False)
    if not 0 <= frame < frames:
        raise ValueError(f"frame {frame} out of range (0..{frames - 1})")
    arr = pixel_array(ds, index=frame if frames > 1 else None)
    arr = np.asarray(arr)
    bits = _int(ds, "BitsStored") or 8
    if arr.dtype != np.uint8 or bits > 8:
        arr = np.clip(arr.astype(np.float64) * 255.0 / (2**bits - 1), 0, 255).round().astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = 255 - arr
    return Image.fromarray(arr)
