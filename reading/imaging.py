"""Image variants for the reader's viewer (pure: PIL and numpy, no Django): the red-free view (the green
channel, where haemorrhages, microaneurysms and vessels stand out) and contrast-limited adaptive histogram
equalisation (CLAHE) of the luminance, as graders use to bring out faint lesions.

CLAHE follows Zuiderveld (Graphics Gems IV, 1994): the image is cut into tiles, each tile's histogram is
clipped at ``clip_limit`` times its mean and the excess spread evenly, each tile's cumulative histogram maps
grey levels, and every pixel is mapped by the bilinear mix of its four nearest tiles' mappings (no seams)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

VARIANTS = ("original", "redfree", "clahe")
MAX_VARIANT_SIDE = 4096  # variants of larger photographs are computed at this size (the viewer still zooms)


def _open(data: bytes, max_side: int) -> Image.Image:
    img: Image.Image = Image.open(io.BytesIO(data))
    img.load()
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def clahe(grey: np.ndarray, *, tiles: int = 8, clip_limit: float = 2.0) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of an 8-bit greyscale array (same shape, uint8)."""
    if grey.ndim != 2:
        raise ValueError("clahe takes a 2-D greyscale array")
    grey = grey.astype(np.uint8, copy=False)
    h, w = grey.shape
    tiles_y, tiles_x = max(1, min(tiles, h)), max(1, min(tiles, w))
    th, tw = -(-h // tiles_y), -(-w // tiles_x)
    padded = np.pad(grey, ((0, th * tiles_y - h), (0, tw * tiles_x - w)), mode="reflect" if h > 1 < w else "edge")
    blocks = padded.reshape(tiles_y, th, tiles_x, tw).transpose(0, 2, 1, 3).reshape(tiles_y, tiles_x, th * tw)
    hist = np.zeros((tiles_y, tiles_x, 256), dtype=np.float64)
    for i in range(tiles_y):
        for j in range(tiles_x):
            hist[i, j] = np.bincount(blocks[i, j], minlength=256)
    limit = max(1.0, clip_limit * th * tw / 256.0)
    excess = np.clip(hist - limit, 0, None).sum(axis=2, keepdims=True)
    hist = np.minimum(hist, limit) + excess / 256.0
    cdf = hist.cumsum(axis=2)
    lut = np.clip(np.round((cdf - cdf[..., :1]) / np.maximum(cdf[..., -1:] - cdf[..., :1], 1) * 255), 0, 255)

    def axis(n: int, size: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n) + 0.5) / size - 0.5  # position in tile units, relative to the first tile's centre
        lo = np.clip(np.floor(pos), 0, count - 1).astype(int)
        hi = np.minimum(lo + 1, count - 1)
        weight = np.clip(pos - lo, 0.0, 1.0)
        return lo, hi, weight

    y0, y1, wy = axis(h, th, tiles_y)
    x0, x1, wx = axis(w, tw, tiles_x)
    wy, wx = wy[:, None], wx[None, :]
    top = (1 - wx) * lut[y0[:, None], x0[None, :], grey] + wx * lut[y0[:, None], x1[None, :], grey]
    bottom = (1 - wx) * lut[y1[:, None], x0[None, :], grey] + wx * lut[y1[:, None], x1[None, :], grey]
    return np.clip(np.round((1 - wy) * top + wy * bottom), 0, 255).astype(np.uint8)


def render_variant(data: bytes, variant: str, *, max_side: int = MAX_VARIANT_SIDE) -> bytes:
    """PNG bytes of an image (JPEG, PNG or TIFF bytes) as ``variant``: ``original`` (re-encoded for the
    browser), ``redfree`` (green channel) or ``clahe`` (CLAHE of the luminance, colours kept)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    img = _open(data, max_side)
    if variant == "redfree":
        img = img.getchannel("G") if img.mode == "RGB" else img
    elif variant == "clahe":
        if img.mode == "L":
            img = Image.fromarray(clahe(np.asarray(img)))
        else:
            y, cb, cr = img.convert("YCbCr").split()
            img = Image.merge("YCbCr", (Image.fromarray(clahe(np.asarray(y))), cb, cr)).convert("RGB")
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False, compress_level=3)
    return out.getvalue()
