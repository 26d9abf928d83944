"""Synthetic photographs carrying fake PHI in every metadata container the formats offer."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

CANARY = "CANARY^PATIENT MRN-CANARY-123 1961-02-03"
CANARY_BYTES = (b"CANARY", b"canary", b"MRN-CANARY-123", b"1961-02-03", b"19610203")
XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>CANARY^PATIENT</dc:creator></rdf:Description>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def fundus_pixels(height: int, width: int, *, channels: int = 3, high: int = 256, seed: int = 7) -> np.ndarray:
    """Noise that passes the fundus gate (trials/uploads/fundus_gate.py): a red-orange disc of random texture on a
    black surround, like a fundus camera's circular field of view. ``high`` is the sample range (4096 for 12-bit);
    ``channels`` 1 gives a monochrome photograph."""
    rng = np.random.default_rng(seed)
    shape = (height, width, channels)
    if channels == 3:
        low, top = np.array([0.45, 0.18, 0.04]), np.array([0.9, 0.5, 0.25])  # red over green over blue
        arr = (rng.uniform(low, top, size=shape) * high).astype(np.uint8 if high <= 256 else np.uint16)
    else:
        arr = rng.integers(high // 4, high, size=shape, dtype=np.uint8 if high <= 256 else np.uint16)
    yy, xx = np.ogrid[:height, :width]
    radius = 0.47 * min(height, width)
    arr[(xx - (width - 1) / 2) ** 2 + (yy - (height - 1) / 2) ** 2 > radius * radius] = 0
    return arr if channels == 3 else arr[..., 0]


def photo(width: int = 400, height: int = 300, *, fundus: bool = True) -> Image.Image:
    """An RGB picture with a red block in the top-left corner, so orientation changes are visible. ``fundus``
    (the default) draws a fundus-like field (``fundus_pixels``) so the upload gate accepts it; without it the
    whole picture is noise (the corner block then survives de-identification: no field of view is blanked)."""
    if fundus:
        arr = fundus_pixels(height, width)
    else:
        arr = np.random.default_rng(7).integers(40, 200, size=(height, width, 3), dtype=np.uint8)
    arr[:40, :60] = (255, 0, 0)
    return Image.fromarray(arr)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010E] = "ImageDescription " + CANARY  # ImageDescription
    exif[0x013B] = "CANARY^ARTIST"  # Artist
    exif[0x0131] = "CANARY camera firmware"  # Software
    return exif.tobytes()


def jpeg_with_metadata(orientation: int = 6, *, width: int = 400, height: int = 300, fundus: bool = True) -> bytes:
    out = io.BytesIO()
    photo(width, height, fundus=fundus).save(
        out,
        format="JPEG",
        quality=95,
        exif=exif_bytes(orientation),
        icc_profile=srgb_icc(),
        comment=b"COM segment " + CANARY.encode(),
        xmp=XMP,
    )
    return out.getvalue()


def png_with_text_chunks(*, fundus: bool = True) -> bytes:
    info = PngInfo()
    info.add_text("Author", CANARY)  # tEXt
    info.add_text("Comment", "zipped " + CANARY, zip=True)  # zTXt
    info.add_itxt("Description", "international " + CANARY, lang="en", tkey="Beschreibung")  # iTXt
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    out = io.BytesIO()
    photo(fundus=fundus).save(
        out, format="PNG", pnginfo=info, icc_profile=srgb_icc(), exif=exif_bytes(1), dpi=(300, 300)
    )
    return out.getvalue()


def tiff_with_tags(orientation: int = 1, *, fundus: bool = True) -> bytes:
    out = io.BytesIO()
    tags = {
        270: "TIFF ImageDescription " + CANARY,
        315: "CANARY^ARTIST",
        305: "CANARY scanner",
        306: "1961:02:03 10:11:12",
        274: orientation,
    }
    photo(fundus=fundus).save(out, format="TIFF", tiffinfo=tags, compression="tiff_lzw")
    return out.getvalue()


def png_bomb(side: int = 20000) -> bytes:
    """A tiny PNG whose header claims side x side 8-bit grey pixels (zeros compress ~1000:1)."""
    raw_row = b"\x00" + b"\x00" * side
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(raw_row) for _ in range(side)]
    idat = b"".join(chunks) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def plain_png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    img = photo(width, height)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(out, format="PNG")
    return out.getvalue()


def png_16bit_grey(width: int = 300, height: int = 300) -> bytes:
    arr = (np.arange(width * height, dtype=np.uint32).reshape(height, width) * 7 % 65536).astype(np.uint16)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG")
    return out.getvalue()


HRF = Path(__file__).resolve().parents[2] / "demo" / "data" / "hrf"
BORDER_PANEL = 220  # px of black added left of the field, where cameras put their text panel


def stamped_fundus(*, border: str | None = None, field: str | None = None, photograph: str = "01_h.jpg") -> Image.Image:
    """A shipped HRF photograph (1024 x 683, circular field) with a black text panel on its left, and text stamped
    in white the way cameras do: ``border`` in the panel (outside the field of view), ``field`` across the middle
    of the retina."""
    fundus = Image.open(HRF / photograph).convert("RGB")
    img = Image.new("RGB", (fundus.width + BORDER_PANEL, fundus.height))
    img.paste(fundus, (BORDER_PANEL, 0))
    draw = ImageDraw.Draw(img)
    if border:
        font = ImageFont.load_default(size=22)
        for i, line in enumerate(border.split("\n")):
            draw.text((8, 12 + 34 * i), line, fill=(255, 255, 255), font=font)
    if field:
        draw.text((BORDER_PANEL + 330, 320), field, fill=(255, 255, 255), font=ImageFont.load_default(size=40))
    return img


def letterboxed(img: Image.Image, aspect: float = 4 / 3) -> Image.Image:
    """``img`` centred between black bars above and below, to ``aspect`` (width over height), as a viewer exports a
    3:2 fundus photograph at 4:3."""
    height = max(img.height, round(img.width / aspect))
    out = Image.new("RGB", (img.width, height))
    out.paste(img.convert("RGB"), (0, (height - img.height) // 2))
    return out


def encoded(img: Image.Image, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return out.getvalue()


# Not fundus photographs (the upload gate must refuse them).
def web_page(width=1280, height=800, *, dark=False) -> Image.Image:
    """A page like the Visus trial list: a header bar, a table of rows of text, on a light (or dark) background."""
    page = Image.new("RGB", (width, height), (20, 22, 26) if dark else (248, 249, 251))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, width, 56), fill=(24, 62, 120))
    draw.text((24, 16), "Visus  Trials  Reading  Audit", fill="white", font=ImageFont.load_default(size=20))
    ink = (230, 230, 230) if dark else (30, 30, 30)
    for i in range(18):
        y = 90 + 36 * i
        draw.line((24, y + 30, width - 24, y + 30), fill=(200, 200, 205))
        draw.text(
            (32, y),
            f"DR0{i % 9} Screening trial {i}   Recruiting   3 sites",
            fill=ink,
            font=ImageFont.load_default(size=18),
        )
    return page


def text_image(width=900, height=600) -> Image.Image:
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for i in range(20):
        draw.text((20, 20 + 28 * i), "Patient letter: please attend clinic on Monday " * 2, fill="black")
    return img
