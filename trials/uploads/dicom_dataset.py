"""Reading a DICOM upload and the checks made from its header before anything is walked or decoded: the parse,
numbers from the header, the transfer syntax, burned-in annotation and the pixel budget (pydicom has no
decompression-bomb guard, so Rows x Columns x NumberOfFrames x SamplesPerPixel is checked first).
"""

from __future__ import annotations

import math
from typing import Final

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    JPEG2000MC,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from trials.uploads.errors import UploadRejected
from trials.uploads.spool import Source, as_file

# Samples, not bytes: a 1024 x 1024 x 128-frame OCT volume is 134 M; a 24 Mpx RGB fundus photo is 72 M.
DEFAULT_MAX_PIXELS: Final = 200_000_000


# Values longer than this stay in the file when it is parsed (pixel data; 1 MiB keeps every header value in memory).
DEFER_BYTES: Final = 1024 * 1024
_PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloatPixelData
_EXTENDED_OFFSET_TAGS = (0x7FE00001, 0x7FE00002)  # ExtendedOffsetTable(Lengths): stale once frames are rewritten
_NATIVE_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian})
# Compressed syntaxes whose frames can be cleaned without decoding (see "Pixel data" below). Everything else
# (MPEG-2/4, HEVC, deflate, JPEG XL, retired JPEG processes, private syntaxes) is refused.
_JPEG_SYNTAXES = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1})
_JPEG_LS_SYNTAXES = frozenset({JPEGLSLossless, JPEGLSNearLossless})
_JPEG_2000_SYNTAXES = frozenset(
    {JPEG2000Lossless, JPEG2000, JPEG2000MCLossless, JPEG2000MC, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K}
)
_ACCEPTED_SYNTAXES = (
    _NATIVE_SYNTAXES | _JPEG_SYNTAXES | _JPEG_LS_SYNTAXES | _JPEG_2000_SYNTAXES | frozenset({RLELossless})
)


# --------------------------------------------------------------------------------------------------------------
# Checks before the walk
# --------------------------------------------------------------------------------------------------------------
def _read(source: Source) -> Dataset:
    """Parse a DICOM file, leaving values over ``DEFER_BYTES`` (the pixel data) in the file: they are read from it
    when used, or streamed (``deidentify_dicom``) or read one frame at a time (``frame_image``)."""
    handle = as_file(source)
    try:
        try:
            return dcmread(handle, defer_size=DEFER_BYTES)
        except InvalidDicomError:
            handle.seek(0)
            return dcmread(handle, force=True, defer_size=DEFER_BYTES)
    except Exception:
        # Any parser failure (truncated element, bad length, broken sequence) is a damaged upload.
        raise UploadRejected(
            "The DICOM file could not be read: it is truncated or damaged. Export it again from the device.",
            "dicom_unreadable",
        ) from None


def _value_length(raw: object) -> int:
    """Length of an element's value as read: its bytes, or the length in the file of a deferred value."""
    if raw is None:
        return 0
    value = getattr(raw, "value", None)
    if value is None:
        length = getattr(raw, "length", 0) or 0
        return 0 if length == 0xFFFFFFFF else int(length)
    return len(value)


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        raise UploadRejected(f"The DICOM attribute {keyword} is not a valid number.", "dicom_invalid") from None


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(syntax)
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_image(
    ds: Dataset, syntax: UID, *, max_pixels: int, allow_missing_burned_in_annotation: bool
) -> tuple[int, int, int, int]:
    """Burned-in text and pixel budget, from the header only. Returns rows, columns, frames, samples."""
    burned_in = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned_in == "YES":
        raise UploadRejected(
            "The image has text burned into its pixels (BurnedInAnnotation = YES), which can show the patient's "
            "name or dates. Export the image without annotations.",
            "burned_in_annotation",
        )
    if burned_in != "NO" and not allow_missing_burned_in_annotation:
        raise UploadRejected(
            "The image does not declare whether text is burned into its pixels (BurnedInAnnotation is missing), "
            "so it cannot be accepted as de-identifiable. Export it from the device's DICOM export.",
            "burned_in_annotation_unknown",
        )
    if str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper() == "YES":
        raise UploadRejected(
            "The image shows recognisable facial features (RecognizableVisualFeatures = YES); only fundus, OCT and "
            "perimetry images are accepted.",
            "recognizable_features",
        )
    if not any(t in ds for t in _PIXEL_DATA_TAGS):
        raise UploadRejected("The DICOM image holds no pixel data.", "dicom_no_pixels")
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    frames, samples = _int(ds, "NumberOfFrames") or 1, _int(ds, "SamplesPerPixel") or 1
    if not rows or not columns or rows < 0 or columns < 0 or frames < 0 or samples < 0:
        raise UploadRejected("The DICOM image does not state valid Rows and Columns.", "dicom_invalid")
    total = rows * columns * frames * samples
    if total > max_pixels:
        raise UploadRejected(
            f"The image is too large to process ({total:,} samples; the limit is {max_pixels:,}).",
            "too_many_pixels",
        )
    if syntax in _NATIVE_SYNTAXES and 0x7FE00010 in ds:
        bits = _int(ds, "BitsAllocated") or 8
        expected = math.ceil(total * bits / 8)
        length = _value_length(ds.get_item(0x7FE00010, keep_deferred=True))
        if length < expected:
            raise UploadRejected(
                "The DICOM image's pixel data is shorter than its header says: the file is truncated.", "truncated"
            )
    return rows, columns, frames, samples


def _check_syntax(syntax: UID) -> None:
    if syntax not in _ACCEPTED_SYNTAXES:
        raise UploadRejected(
            "The image is stored with a compression (transfer syntax) whose embedded metadata cannot be removed "
            "safely (for example MPEG or HEVC video, deflate, or an unknown format). Export it again uncompressed "
            "or as JPEG.",
            "compression_refused",
        )
