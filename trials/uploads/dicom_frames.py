"""One decoded frame of a DICOM image, for previews and network input. Not de-identification: inference uses it
on files ``deidentify_dicom`` already produced."""

from __future__ import annotations

from typing import BinaryIO, cast

import numpy as np
from PIL import Image
from pydicom.pixels import pixel_array

from trials.uploads.dicom_dataset import DEFAULT_MAX_PIXELS, _check_image, _int, _read, _transfer_syntax
from trials.uploads.spool import Source, as_file


def frame_image(source: Source, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode one frame of a DICOM image (bytes, or a seekable binary file) to an 8-bit PIL image (L or RGB), after
    the pixel-budget check. Only that frame's pixel data is read from a file.

    Precondition: ``source`` is a file ``deidentify_dicom`` produced or accepted.
    """
    handle = as_file(source)
    ds = _read(handle)
    syntax = _transfer_syntax(ds)
    _, _, frames, _ = _check_image(ds, syntax, max_pixels=max_pixels, allow_missing_burned_in_annotation=False)
    if not 0 <= frame < frames:
        raise ValueError(f"frame {frame} out of range (0..{frames - 1})")
    handle.seek(0)
    arr = pixel_array(cast(BinaryIO, handle), index=frame if frames > 1 else None)
    arr = np.asarray(arr)
    bits = _int(ds, "BitsStored") or 8
    if arr.dtype != np.uint8 or bits > 8:
        arr = np.clip(arr.astype(np.float64) * 255.0 / (2**bits - 1), 0, 255).round().astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = 255 - arr
    return Image.fromarray(arr)
