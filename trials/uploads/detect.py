"""Decide what an uploaded file is from its bytes, never from its name or the browser's content type."""

from __future__ import annotations

import io
import re
from enum import StrEnum
from typing import Literal

from trials.uploads.errors import PDF_REFUSAL, UploadRejected
from trials.uploads.visual_field import looks_like_visual_field_csv

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "FileKind", "UploadRejected", "detect_file_kind"]

DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # an OCT volume can be a few hundred MB

_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_ACCEPTED = "JPEG, PNG, TIFF, DICOM or the documented visual-field CSV"


class FileKind(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    TIFF = "tiff"
    DICOM = "dicom"
    VISUAL_FIELD_CSV = "visual_field_csv"


# Formats people commonly try, refused with a message that says what to do instead.
_OTHER_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"PK\x03\x04", 0, "archive_refused", "ZIP archives are not accepted; upload the files one by one."),
    (b"GIF8", 0, "format_refused", f"GIF images are not accepted; upload {_ACCEPTED}."),
    (b"BM", 0, "format_refused", "BMP images are not accepted; export the image as PNG or TIFF."),
    (b"ftypheic", 4, "format_refused", "HEIC photos are not accepted; export the image as JPEG or PNG."),
    (b"ftypmif1", 4, "format_refused", "HEIF photos are not accepted; export the image as JPEG or PNG."),
    (b"\x00\x00\x00\x0cjP  ", 0, "format_refused", "JPEG 2000 files are not accepted; export as PNG or TIFF."),
)


def detect_file_kind(data: bytes, *, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> FileKind:
    """Return the kind of an upload or raise UploadRejected.

    The checks are cheap structural ones (signature, minimal length, end markers) so that empty, truncated and
    unknown files are refused before any decoder sees them; the format modules still validate fully.
    """
    if not data:
        raise UploadRejected("The file is empty.", "empty")
    if len(data) > max_bytes:
        raise UploadRejected(
            f"The file is larger than the upload limit of {max_bytes // (1024 * 1024)} MB.", "too_large"
        )
    if data.startswith(b"\xff\xd8\xff"):
        _check_jpeg(data)
        return FileKind.JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        _check_png(data)
        return FileKind.PNG
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        _check_tiff(data)
        return FileKind.TIFF
    if len(data) >= 132 and data[128:132] == b"DICM":
        if len(data) < 132 + 12:
            raise _truncated("DICOM")
        return FileKind.DICOM
    # The PDF specification lets a header start anywhere in the first 1024 bytes.
    if b"%PDF-" in data[:1024]:
        raise UploadRejected(PDF_REFUSAL, "pdf_printout")
    for signature, offset, code, message in _OTHER_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            raise UploadRejected(message, code)
    text = _as_text(data)
    if text is not None:
        if looks_like_visual_field_csv(text):
            return FileKind.VISUAL_FIELD_CSV
        if _looks_like_table(text):
            raise UploadRejected(
                "This table is not in the documented visual-field CSV format: its first line must be the header "
                "with the columns eye, age, s1 ... s54 and the reliability indices (see the visual-field CSV "
                "format page).",
                "unknown_text",
            )
        raise UploadRejected(
            f"This is not an image or DICOM file: it holds plain text. Upload {_ACCEPTED}.", "not_an_image"
        )
    if _is_dicom_without_preamble(data):
        return FileKind.DICOM
    raise UploadRejected(f"The file type was not recognised. Upload {_ACCEPTED}.", "unknown_type")


def _truncated(kind: str) -> UploadRejected:
    return UploadRejected(
        f"The {kind} file is truncated or damaged (it ends before the data does). Upload the original file again.",
        "truncated",
    )


def _check_jpeg(data: bytes) -> None:
    # The main image's last scan (SOS) must be followed by an end-of-image marker. Thumbnails inside EXIF have
    # their own SOS/EOI, but they come before the main image's scans, so rfind finds the right SOS.
    last_scan = data.rfind(b"\xff\xda")
    if len(data) < 128 or last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
        raise _truncated("JPEG")


def _check_png(data: bytes) -> None:
    # Signature (8) + IHDR chunk (25) + IEND chunk (12) is the smallest valid PNG; IEND must be present.
    if len(data) < 45 or data[12:16] != b"IHDR" or data.rfind(b"IEND") < 33:
        raise _truncated("PNG")


def _check_tiff(data: bytes) -> None:
    order: Literal["little", "big"] = "little" if data[:2] == b"II" else "big"
    first_ifd = int.from_bytes(data[4:8], order) if len(data) >= 8 else 0
    if first_ifd < 8 or first_ifd + 2 > len(data):
        raise _truncated("TIFF")


def _as_text(data: bytes) -> str | None:
    head = data[:4096]
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8-sig")
    except UnicodeDecodeError:
        # A multi-byte character cut at the 4096-byte boundary is still text.
        try:
            return head[:-3].decode("utf-8-sig")
        except UnicodeDecodeError:
            return None


def _looks_like_table(text: str) -> bool:
    """A first line with separators (comma, semicolon or tab): someone's spreadsheet export, so the CSV format is
    the help they need; any other text (a note, a log, a text file renamed .jpg) is simply not an image."""
    first = text.lstrip().split("\n", 1)[0]
    return max(first.count(","), first.count(";"), first.count("\t")) >= 2


def _is_dicom_without_preamble(data: bytes) -> bool:
    # Files written without the 128-byte preamble and "DICM" are still legal DICOM streams; accept them only when
    # pydicom parses them and they declare a SOP class, so random bytes are not taken for DICOM.
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        sop_class = str(ds.get("SOPClassUID", "") or "")
    except InvalidDicomError:
        return False
    except Exception:
        # With force=True pydicom raises whatever its parser trips on (ValueError, KeyError, OverflowError...);
        # any of them means these bytes are not a DICOM stream.
        return False
    return bool(_UID.match(sop_class))
