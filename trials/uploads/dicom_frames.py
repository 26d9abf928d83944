"""One decoded frame of a DICOM image, for previews and network input. Not de-identification: inference uses it
on files ``deidentify_dicom`` already produced."""

from __future__ import annotations

import io
from typing import BinaryIO, cast

import numpy as np
from PIL import Image
from pydicom.encaps import get_frame
from pydicom.pixels import get_decoder, pixel_array
from pydicom.pixels.processing import convert_color_space
from pydicom.uid import UID, JPEGBaseline8Bit, JPEGExtended12Bit

from trials.uploads.dicom_dataset import DEFAULT_MAX_PIXELS, _check_image, _int, _read, _transfer_syntax
from trials.uploads.spool import Source, as_file

# The syntaxes whose frames Pillow decodes with libjpeg. libjpeg itself applies the colour transform an Adobe APP14
# marker names (YCbCr to RGB, or none for RGB-coded frames): such a frame comes out RGB whatever the header says.
_LIBJPEG_SYNTAXES = (JPEGBaseline8Bit, JPEGExtended12Bit)
_YBR = ("YBR_FULL", "YBR_FULL_422")


def _decoded_as_rgb(ds: object, syntax: UID, frame: int, frames: int) -> bool:
    """True when the decoder has already turned this JPEG frame into RGB (its APP14 Adobe marker says how)."""
    if syntax not in _LIBJPEG_SYNTAXES:
        return False
    data = get_frame(ds.PixelData, frame, number_of_frames=frames)  # type: ignore[attr-defined]
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as header:  # reads the markers, decodes nothing
        return "adobe_transform" in header.info


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
    if syntax in _LIBJPEG_SYNTAXES:
        # Decoded without pydicom's own colour conversion (raw): pydicom converts YBR to RGB after Pillow, which has
        # already converted a frame with an APP14 Adobe marker: done twice, a fundus came out green and the gate
        # refused it. The conversion is done here, once, where the frame still needs it. (The encapsulated frames
        # are compressed: reading them from the file is small.)
        arr, changed = get_decoder(syntax).as_array(
            ds, index=frame if frames > 1 else None, raw=True, decoding_plugin="pillow"
        )
        photometric = str(changed.get("photometric_interpretation") or ds.get("PhotometricInterpretation", "")).upper()
        if (
            arr.ndim == 3
            and arr.shape[-1] == 3
            and photometric in _YBR
            and not _decoded_as_rgb(ds, syntax, frame, frames)
        ):
            arr = convert_color_space(arr, "YBR_FULL", "RGB")  # YBR_FULL_422 differs only in how it was sampled
    else:
        # Native and other compressed syntaxes: only this frame is read from the file, and pydicom converts YBR once.
        handle.seek(0)
        arr = pixel_array(cast(BinaryIO, handle), index=frame if frames > 1 else None)
    arr = np.asarray(arr)
    bits = _int(ds, "BitsStored") or 8
    if arr.dtype != np.uint8 or bits > 8:
        arr = np.clip(arr.astype(np.float64) * 255.0 / (2**bits - 1), 0, 255).round().astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = 255 - arr
    return Image.fromarray(arr)
