"""Strip identifying metadata from JPEG/PNG/TIFF fundus photographs by rebuilding them from their pixels.

A plain Pillow re-save is not enough: JPEG keeps its COM segment, PNG keeps ICC profiles and text chunks, TIFF
keeps its tags. So the image is decoded once (behind a pixel budget checked from the header), EXIF orientation
is applied, colours are converted to sRGB, and a **new** image is built from the pixel array alone and encoded
with no metadata at all. The encoded output is parsed again to prove that only pixel-carrying chunks/segments
are present. Before encoding, everything outside the photograph's circular field of view (and the black bars of a
letterboxed export) is blanked and the rest is searched for burned-in text (``burned_in_text``): cameras stamp
names, IDs and dates into the pixels.

Output format: **PNG** (lossless). Graders and the DR network look for microaneurysms a few pixels wide; a
second JPEG generation would add compression artefacts of that size to images that were already JPEG once.
PNG costs disk (typically 2-4x a camera JPEG, more for 8 Mpx photographs) and encode time, which the upload path
can afford. zlib level 3 is the default: on a fundus photograph it is ~3x faster than level 6 for ~12% more
bytes. JPEG at quality 95 (4:4:4) stays available for callers that need small files.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from trials.uploads.burned_in_text import (
    FieldOfView,
    OcrBudget,
    blank_outside_field,
    blanked_rim,
    find_field_of_view,
    refuse_burned_in_text,
)
from trials.uploads.errors import UploadRejected

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MIN_SIDE",
    "DeidentifiedImage",
    "deidentify_image",
    "image_to_jpeg",
    "make_preview",
    "make_thumbnail",
]

DEFAULT_MAX_IMAGE_PIXELS: Final = 50_000_000  # widest fundus cameras are ~24 Mpx; montages stay under this
DEFAULT_MIN_SIDE: Final = 256
_FORMATS: Final = ("JPEG", "PNG", "TIFF")

# Pillow's own bomb limit is process-wide and only *warns* below 2x its value (89.5 Mpx by default). Lower it
# for every caller in the process; each call below still checks its own budget from the header first and turns
# the warning into an error.
Image.MAX_IMAGE_PIXELS = min(Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS)

# TIFF tags that are image structure, not metadata (baseline TIFF 6.0 plus tiling/sample-format tags).
_TIFF_STRUCTURE: Final = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 274, 277, 278, 279, 280, 281, 282, 283, 284, 290, 291, 296,
     317, 318, 319, 320, 322, 323, 324, 325, 338, 339, 340, 341, 530, 531, 532}
)  # fmt: skip
_TIFF_KINDS: Final = {
    269: "tiff_text_tags",  # DocumentName
    270: "tiff_text_tags",  # ImageDescription
    271: "tiff_text_tags",  # Make
    272: "tiff_text_tags",  # Model
    285: "tiff_text_tags",  # PageName
    305: "tiff_text_tags",  # Software
    306: "tiff_text_tags",  # DateTime
    315: "tiff_text_tags",  # Artist
    316: "tiff_text_tags",  # HostComputer
    33432: "tiff_text_tags",  # Copyright
    700: "xmp",
    33723: "iptc",
    34377: "photoshop",
    34665: "exif",
    34853: "gps",
    34675: "icc_profile",
}


@dataclass(frozen=True)
class DeidentifiedImage:
    data: bytes
    width: int
    height: int
    format: str  # "PNG" or "JPEG"
    source_format: str
    stripped: tuple[str, ...]  # kinds of metadata found and dropped, e.g. ("comment", "exif", "icc_profile")
    orientation_applied: int  # EXIF orientation value that was applied (1 = none)
    colour_converted: bool  # an embedded ICC profile was used to convert to sRGB
    text_checked: bool = False  # the border was blanked and the rest searched for burned-in text
    field_of_view: FieldOfView | None = None  # the fitted circle; None: none found, the whole image was searched
    border_pixels_blanked: int = 0  # pixels outside the field of view that were not black before


def _rejected_unreadable() -> UploadRejected:
    return UploadRejected(
        "The image could not be decoded: it is truncated or damaged. Upload the original file again.",
        "image_unreadable",
    )


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and enforce the pixel budget before any pixel is decoded."""
    try:
        # catch_warnings is process-global state; the upload core runs in worker processes, one file at a time.
        with warnings.catch_warnings():
            # Turn Pillow's warning into an error unless the caller deliberately allows more than Pillow's limit.
            action: Literal["error", "ignore"] = (
                "error" if max_pixels <= (Image.MAX_IMAGE_PIXELS or max_pixels) else "ignore"
            )
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error):
        raise _rejected_unreadable() from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise _rejected_unreadable()
    if width * height > max_pixels:
        raise _too_large(max_pixels)
    return img


def _too_large(max_pixels: int) -> UploadRejected:
    return UploadRejected(
        f"The image has more pixels than the limit of {max_pixels:,}; it may be a decompression bomb. "
        "Upload the camera's original image.",
        "image_too_large",
    )


def _load(img: Image.Image) -> None:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, struct.error, EOFError):
        # Pillow raises OSError("image file is truncated ...") for cut-off files.
        raise _rejected_unreadable() from None


def _metadata_kinds(img: Image.Image) -> set[str]:
    kinds: set[str] = set()
    info = img.info
    for key, kind in (("exif", "exif"), ("icc_profile", "icc_profile"), ("comment", "comment"), ("xmp", "xmp")):
        if info.get(key):
            kinds.add(kind)
    if img.format == "JPEG":
        for marker, content in getattr(img, "applist", []):
            if marker == "APP1" and content.startswith(b"Exif"):
                kinds.add("exif")
            elif marker == "APP1" and b"ns.adobe.com/xap" in content[:64]:
                kinds.add("xmp")
            elif marker == "APP2" and content.startswith(b"ICC_PROFILE"):
                kinds.add("icc_profile")
            elif marker == "APP2" and content.startswith(b"MPF"):
                kinds.add("embedded_images")
            elif marker == "APP13":
                kinds.add("iptc")
            elif marker == "COM":
                kinds.add("comment")
            elif marker not in ("APP0", "APP14"):  # JFIF and Adobe colour-transform flags carry no metadata
                kinds.add(f"{marker.lower()}_segment")
    elif img.format == "PNG":
        text = getattr(img, "text", {}) or {}
        if any(k != "XML:com.adobe.xmp" for k in text):
            kinds.add("text_chunks")
        if "XML:com.adobe.xmp" in text:
            kinds.add("xmp")
        if "dpi" in info:
            kinds.add("physical_dimensions")
        if {"gamma", "chromaticity", "srgb"} & info.keys():
            kinds.add("colour_chunks")
    elif img.format == "TIFF":
        tags = getattr(img, "tag_v2", {})
        for tag in tags:
            if tag not in _TIFF_STRUCTURE:
                kinds.add(_TIFF_KINDS.get(tag, "tiff_tags"))
    if getattr(img, "n_frames", 1) > 1:
        kinds.add("extra_frames")
    return kinds


def _to_8bit_rgb_array(img: Image.Image) -> tuple[np.ndarray, bool]:
    """Pixels as HxWx3 uint8 sRGB. Returns the array and whether an ICC profile was applied."""
    icc = img.info.get("icc_profile")
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Pillow's convert() clips 16-bit values at 255; scale by the type's range (or the data's, for floats).
        arr = np.asarray(img).astype(np.float64)
        if mode == "F" or (mode == "I" and arr.max(initial=0) > 65535):
            lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
            arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        elif arr.max(initial=0) > 255:
            arr = arr * 255.0 / 65535.0
        gray = np.clip(arr.round(), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), False
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Fundus backgrounds are black, so transparent areas become black rather than white.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        background.alpha_composite(rgba)
        img, mode = background.convert("RGB"), "RGB"
    converted = False
    if icc and mode in ("RGB", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            profiled = ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            assert profiled is not None  # None only for inPlace=True
            img = profiled
            converted = True
        except (ImageCms.PyCMSError, OSError, ValueError):
            converted = False  # a broken profile is dropped and the pixels are taken as sRGB
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except ValueError:
            raise UploadRejected(
                f"The image's colour mode ({mode}) cannot be converted to RGB. Export it as an RGB JPEG or PNG.",
                "image_mode_refused",
            ) from None
    return np.asarray(img, dtype=np.uint8), converted


def check_gradable_size(width: int, height: int, min_side: int) -> None:
    """Refuse a photograph too small to grade (a thumbnail or a crop), whatever its container."""
    if min(width, height) < min_side:
        raise UploadRejected(
            f"The image is too small to grade ({width} x {height} px; the shorter side must be at least "
            f"{min_side} px). Upload the camera's full-resolution image, not a thumbnail.",
            "image_too_small",
        )


def deidentify_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    output_format: Literal["PNG", "JPEG"] = "PNG",
    png_compress_level: int = 3,
    check_burned_in_text: bool = True,
    check_pixels: Callable[[np.ndarray], None] | None = None,
    ocr_budget: OcrBudget | None = None,
) -> DeidentifiedImage:
    """Rebuild a JPEG/PNG/TIFF photograph from its pixels. Raises UploadRejected for unusable images.

    Only the first frame of multi-page TIFFs and MPO/APNG files is kept (recorded as "extra_frames"). With
    ``check_burned_in_text`` (the default; only benchmarks turn it off) everything outside the photograph's circular
    field of view (and, where black bars cut the field, the bars whole) is blanked and exactly the rest is searched
    for burned-in text, which refuses the file
    (``burned_in_text``). ``check_pixels`` (the fundus gate) sees the oriented 8-bit RGB pixels first and may
    raise UploadRejected, so an image that is refused anyway is not sent to OCR. ``ocr_budget`` bounds the OCR time
    (a new ``OcrBudget`` if not given); a file whose search does not finish within it is refused
    (``burned_in_text_timeout``), never stored unchecked.
    """
    img = _open(data, max_pixels)
    source_format = img.format or "unknown"
    _load(img)  # within budget now; PNG text chunks after the pixel data are only read by a full load
    kinds = _metadata_kinds(img)
    orientation = 1
    try:
        orientation = int(img.getexif().get(0x0112, 1) or 1)
    except (OSError, ValueError, SyntaxError, struct.error):
        kinds.add("exif")  # unreadable EXIF is still EXIF, and it is dropped with the rest
    try:
        oriented = ImageOps.exif_transpose(img) or img
    except (OSError, ValueError, SyntaxError, struct.error):
        oriented, orientation = img, 1
    if orientation not in range(1, 9):
        orientation = 1
    pixels, converted = _to_8bit_rgb_array(oriented)
    height, width = pixels.shape[:2]
    check_gradable_size(width, height, min_side)
    if check_pixels is not None:
        check_pixels(pixels)
    fov, blanked = None, 0
    if check_burned_in_text:
        fov = find_field_of_view(pixels)
        rim = None
        if fov is not None:
            rim = blanked_rim(pixels, fov)  # type over the field's edge, which blanking cuts, is read whole
            pixels, blanked = blank_outside_field(pixels, fov)
        where = "inside its field of view" if fov is not None else "(no circular field of view was found)"
        refuse_burned_in_text(
            Image.fromarray(np.ascontiguousarray(pixels)), where=where, blanked_outside=fov, rim=rim, budget=ocr_budget
        )
    clean = Image.fromarray(np.ascontiguousarray(pixels))  # a new image: no info dict, no profile, no EXIF
    out = io.BytesIO()
    if output_format == "PNG":
        clean.save(out, format="PNG", compress_level=png_compress_level)
    else:
        clean.save(out, format="JPEG", quality=95, subsampling=0)
    encoded = out.getvalue()
    _verify_clean(encoded, output_format)
    return DeidentifiedImage(
        data=encoded,
        width=width,
        height=height,
        format=output_format,
        source_format=source_format,
        stripped=tuple(sorted(kinds)),
        orientation_applied=orientation,
        colour_converted=converted,
        text_checked=check_burned_in_text,
        field_of_view=fov,
        border_pixels_blanked=blanked,
    )


# --------------------------------------------------------------------------------------------------------------
# Output verification: only pixel-carrying structure may be present
# --------------------------------------------------------------------------------------------------------------
_PNG_ALLOWED: Final = frozenset({b"IHDR", b"IDAT", b"IEND"})
# SOI, APP0 (JFIF), DQT, SOF0/1/2, DHT, DRI, SOS; anything else (APPn, COM) would be metadata.
_JPEG_ALLOWED: Final = frozenset({0xD8, 0xE0, 0xDB, 0xC0, 0xC1, 0xC2, 0xC4, 0xDD, 0xDA})


def png_chunk_types(data: bytes) -> list[bytes]:
    types, pos = [], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        types.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return types


def jpeg_markers(data: bytes) -> list[int]:
    """Markers up to and including the first SOS (the scan data after it holds no segments)."""
    markers: list[int] = []
    pos = 2
    if data[:2] != b"\xff\xd8":
        return markers
    markers.append(0xD8)
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return markers


def _verify_clean(encoded: bytes, output_format: str) -> None:
    extra: set[bytes] | set[int]
    if output_format == "PNG":
        extra = set(png_chunk_types(encoded)) - _PNG_ALLOWED
    else:
        extra = set(jpeg_markers(encoded)) - _JPEG_ALLOWED
    if extra:  # a Pillow change that starts writing metadata must fail loudly, not leak
        raise RuntimeError(f"encoder wrote metadata segments {sorted(extra)!r}")


# --------------------------------------------------------------------------------------------------------------
# Previews and thumbnails (JPEG)
# --------------------------------------------------------------------------------------------------------------
def image_to_jpeg(img: Image.Image, *, max_side: int, quality: int = 85) -> bytes:
    """Downscale to fit ``max_side`` and encode as a metadata-free JPEG."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    img = img.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    clean = Image.fromarray(np.asarray(img, dtype=np.uint8))
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=quality)
    encoded = out.getvalue()
    _verify_clean(encoded, "JPEG")
    return encoded


def make_preview(data: bytes, max_side: int = 1024, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> bytes:
    """JPEG preview of a JPEG/PNG/TIFF image whose longer side is at most ``max_side``, orientation applied."""
    img = _open(data, max_pixels)
    if img.format == "JPEG":
        img.draft("RGB", (max_side, max_side))  # decode at 1/2..1/8 scale: much faster for big photographs
    _load(img)
    oriented = ImageOps.exif_transpose(img) or img
    pixels, _ = _to_8bit_rgb_array(oriented)
    return image_to_jpeg(Image.fromarray(pixels), max_side=max_side)


def make_thumbnail(data: bytes, side: int = 192, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> bytes:
    """Square JPEG thumbnail: the image fitted into ``side`` x ``side`` on black (the colour of fundus borders)."""
    preview = Image.open(io.BytesIO(make_preview(data, side, max_pixels=max_pixels)))
    square = Image.new("RGB", (side, side), (0, 0, 0))
    square.paste(preview, ((side - preview.width) // 2, (side - preview.height) // 2))
    return image_to_jpeg(square, max_side=side)
