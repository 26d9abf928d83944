"""Pixel data cleaned without decoding: native pixels masked to BitsStored/HighBit and trimmed to the declared
frames; JPEG / JPEG-LS frames rebuilt from their decoding markers only; JPEG 2000 / HTJ2K codestreams without
their comment segments; RLE frames re-encapsulated as they are.
"""

from __future__ import annotations

import io
import math
from typing import IO, Any, Final

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    RLELossless,
)

from trials.uploads.dicom_dataset import _EXTENDED_OFFSET_TAGS, _JPEG_2000_SYNTAXES, _JPEG_LS_SYNTAXES, _int
from trials.uploads.dicom_elements import _Cleaner
from trials.uploads.errors import UploadRejected
from trials.uploads.spool import Window, file_size, spooled


def _damaged() -> UploadRejected:
    return UploadRejected(
        "The image's compressed pixel data is damaged (a frame does not follow its compression format), so it "
        "cannot be checked for embedded text. Export the image again from the device.",
        "dicom_pixels_damaged",
    )


# JPEG (ITU T.81) and JPEG-LS (T.87) markers a decoder needs: SOFn, DHT, DAC, DQT, DNL, DRI, DHP, EXP (SOS and
# EOI are handled by the walk). APPn (JFIF, EXIF, XMP, ICC, IPTC, vendor blocks), COM, JPGn and reserved markers
# are dropped; APP14 "Adobe" is rebuilt (it says whether the components are YCbCr).
_JPEG_SOF: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_KEEP: Final = _JPEG_SOF | frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF})
_JPEG_LS_KEEP: Final = _JPEG_KEEP | frozenset({0xF7, 0xF8})  # SOF55, LSE (preset parameters, mapping tables)
_APP14: Final = 0xEE


def _strip_jpeg(frame: bytes, *, ls: bool) -> tuple[bytes, bytes, bool]:
    """Rebuild one JPEG / JPEG-LS frame from its decoding markers and entropy-coded data, without decoding.

    Returns the new frame, its marker segments (everything but the entropy-coded data, for the leak check) and
    whether anything was dropped. Raises UploadRejected ("damaged") for a stream that does not parse.
    """
    n = len(frame)
    if frame[:2] != b"\xff\xd8":
        raise _damaged()
    out = bytearray(b"\xff\xd8")
    headers = bytearray()
    keep = _JPEG_LS_KEEP if ls else _JPEG_KEEP
    pos, dropped, seen_frame, seen_scan = 2, False, False, False
    while True:
        if pos >= n or frame[pos] != 0xFF:
            raise _damaged()
        while pos < n and frame[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            raise _damaged()
        marker = frame[pos]
        pos += 1
        if marker == 0xD9:  # EOI: whatever follows (trailers, appended files) is dropped
            if not seen_scan:
                raise _damaged()
            out += b"\xff\xd9"
            dropped = dropped or bool(frame[pos:].strip(b"\x00"))  # one zero byte is the DICOM even-length pad
            return bytes(out), bytes(headers), dropped
        if marker == 0x01:  # TEM: standalone, means nothing to a decoder
            dropped = True
            continue
        if marker in (0x00, 0xD8) or 0xD0 <= marker <= 0xD7:  # stuffing, a second SOI, RSTn outside a scan
            raise _damaged()
        if pos + 2 > n:
            raise _damaged()
        length = int.from_bytes(frame[pos : pos + 2], "big")
        if length < 2 or pos + length > n:
            raise _damaged()
        segment = bytes((0xFF, marker)) + frame[pos : pos + length]
        payload = frame[pos + 2 : pos + length]
        pos += length
        if marker == 0xDA:  # SOS, then entropy-coded data up to the next marker that is not RSTn
            if not seen_frame:
                raise _damaged()
            seen_scan = True
            out += segment
            headers += segment
            end = _end_of_scan(frame, pos, ls=ls)
            out += frame[pos:end]
            pos = end
        elif marker in keep:
            seen_frame = seen_frame or marker in _JPEG_SOF or (ls and marker == 0xF7)
            out += segment
            headers += segment
        elif marker == _APP14 and payload[:5] == b"Adobe" and len(payload) >= 12:
            # The fixed 12 bytes with version 100 and zero flags; only the colour transform is carried over.
            if payload[11] > 2:
                raise _damaged()
            adobe = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00" + payload[11:12]
            dropped = dropped or adobe != segment
            out += adobe
            headers += adobe
        else:
            dropped = True


def _end_of_scan(frame: bytes, pos: int, *, ls: bool) -> int:
    """Offset of the marker that ends the entropy-coded data starting at ``pos`` (RSTn markers belong to it).

    In JPEG a data byte 0xFF is followed by a stuffed 0x00; in JPEG-LS by a byte below 0x80 (bit stuffing).
    """
    n = len(frame)
    while True:
        i = frame.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            raise _damaged()  # the scan runs off the end: no EOI
        j = i + 1
        while j < n and frame[j] == 0xFF:
            j += 1
        if j >= n:
            raise _damaged()
        code = frame[j]
        if code == 0x00 or (ls and code < 0x80):
            if j != i + 1:
                raise _damaged()  # fill bytes before a stuffed byte
            pos = j + 1
        elif 0xD0 <= code <= 0xD7:
            pos = j + 1
        else:
            return i


def _jp2_codestream(data: bytes) -> bytes:
    """The codestream inside a JP2 file-format wrapper (DICOM wants the bare codestream); its boxes (XML, UUID,
    IPR, colour) are dropped. Exactly one contiguous codestream box is accepted."""
    found: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        if pos + 8 > n:
            if data[pos:].strip(b"\x00"):
                raise _damaged()
            break
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        head = 8
        if length == 1:
            if pos + 16 > n:
                raise _damaged()
            length, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif length == 0:
            length = n - pos
        if length < head or pos + length > n:
            raise _damaged()
        if kind == b"jp2c":
            found.append(data[pos + head : pos + length])
        pos += length
    if len(found) != 1:
        raise _damaged()
    return found[0]


_J2K_SOC, _J2K_SOT, _J2K_SOD, _J2K_EOC = 0x4F, 0x90, 0x93, 0xD9
_J2K_DROP: Final = frozenset({0x64, 0x55})  # COM (free text); TLM (tile-part lengths, stale once COMs go)


def _j2k_segments(code: bytes, pos: int, stop: int, limit: int) -> tuple[bytearray, int, bool]:
    """Marker segments from ``pos`` up to the ``stop`` marker: (kept bytes, offset of ``stop``, anything dropped)."""
    kept, dropped = bytearray(), False
    while True:
        if pos + 2 > limit or code[pos] != 0xFF:
            raise _damaged()
        marker = code[pos + 1]
        if marker == stop:
            return kept, pos, dropped
        if 0x30 <= marker <= 0x3F:  # reserved markers without a length
            kept += code[pos : pos + 2]
            pos += 2
            continue
        if pos + 4 > limit:
            raise _damaged()
        length = int.from_bytes(code[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > limit:
            raise _damaged()
        if marker in _J2K_DROP:
            dropped = True
        else:
            kept += code[pos : pos + 2 + length]
        pos += 2 + length


def _strip_jpeg2000(frame: bytes) -> tuple[bytes, bytes, bool]:
    """Drop COM segments from a JPEG 2000 / HTJ2K codestream's main header and tile-part headers.

    Tile-part lengths (Psot) are corrected; the optional TLM index goes. Returns the new frame, its headers (for
    the leak check) and whether anything was dropped. Raises UploadRejected ("damaged") if it does not parse.
    """
    dropped = False
    code = frame
    if frame[4:8] == b"jP  ":
        code, dropped = _jp2_codestream(frame), True
    if code[:4] != b"\xff\x4f\xff\x51":  # SOC, then SIZ
        raise _damaged()
    end = len(code.rstrip(b"\x00")) if code.endswith(b"\x00") else len(code)
    if end < 4 or code[end - 2 : end] != b"\xff\xd9":
        raise _damaged()
    eoc = end - 2
    main, pos, removed = _j2k_segments(code, 2, _J2K_SOT, eoc)
    dropped = dropped or removed
    out = bytearray(b"\xff\x4f") + main
    headers = bytearray(out)
    while pos < eoc:
        if code[pos : pos + 4] != b"\xff\x90\x00\x0a" or pos + 12 > eoc:
            raise _damaged()
        psot = int.from_bytes(code[pos + 6 : pos + 10], "big")
        part_end = pos + psot if psot else eoc
        if (psot and psot < 14) or part_end > eoc:
            raise _damaged()
        tile_header, sod, removed = _j2k_segments(code, pos + 12, _J2K_SOD, part_end)
        dropped = dropped or removed
        body = code[sod + 2 : part_end]
        new_psot = 12 + len(tile_header) + 2 + len(body) if psot else 0
        sot = code[pos : pos + 6] + new_psot.to_bytes(4, "big") + code[pos + 10 : pos + 12]
        out += sot + tile_header + b"\xff\x93" + body
        headers += sot + tile_header
        pos = part_end
    out += b"\xff\xd9"
    return bytes(out), bytes(headers), dropped


def _pixel_value(raw: Any, handle: IO[bytes]) -> tuple[IO[bytes], int, int]:
    """Where the pixel data value is: (file, start, length). In memory when it was small enough to be read with the
    header; otherwise in the input file, where the parse left it (``DEFER_BYTES``). Length -1: undefined."""
    if raw.value is not None:
        return io.BytesIO(raw.value), 0, len(raw.value)
    length = int(raw.length)
    return handle, int(raw.value_tell), -1 if length == 0xFFFFFFFF else length


_ITEM: Final = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian: encapsulation is always little endian


def _clean_encapsulated(
    ds: Dataset, raw: Any, handle: IO[bytes], syntax: UID, frames: int, cleaner: _Cleaner, directory: str | None
) -> tuple[IO[bytes], list[bytes]]:
    """Rewrite every compressed frame (see the module docstring), one at a time, into a new encapsulated value with
    one fragment per frame and a basic offset table.

    Returns the new value (a buffered view for pydicom to write) and the frames' marker segments for the leak check.
    Nothing is decoded, and no more than one frame is in memory.
    """
    offsets = None
    if all(t in ds for t in _EXTENDED_OFFSET_TAGS):
        offsets = (ds[_EXTENDED_OFFSET_TAGS[0]].value, ds[_EXTENDED_OFFSET_TAGS[1]].value)
    source, start, length = _pixel_value(raw, handle)
    if length < 0:
        length = file_size(source) - start
    out = spooled(directory)
    table = 4 * frames
    out.write(_ITEM + table.to_bytes(4, "little") + bytes(table))
    positions: list[int] = []
    headers: list[bytes] = []
    changed = 0
    try:
        for original in generate_frames(
            Window(source, start, length), number_of_frames=frames, extended_offsets=offsets
        ):
            if len(positions) == frames:
                raise _damaged()
            if syntax in _JPEG_2000_SYNTAXES:
                frame, header, dropped = _strip_jpeg2000(original)
            elif syntax == RLELossless:  # RLE segments hold only run-length codes: the frame is kept as it is
                frame, header, dropped = original, b"", False
            else:
                frame, header, dropped = _strip_jpeg(original, ls=syntax in _JPEG_LS_SYNTAXES)
            positions.append(out.tell() - 8 - table)
            if len(frame) % 2:
                frame += b"\x00"
            out.write(_ITEM + len(frame).to_bytes(4, "little") + frame)
            headers.append(header)
            changed += dropped
    except UploadRejected:
        raise
    except Exception:
        raise _damaged() from None
    if len(positions) != frames or out.tell() - 8 - table > 0xFFFFFFFF:
        raise _damaged()
    out.seek(8)
    out.write(b"".join(p.to_bytes(4, "little") for p in positions))
    # Re-encapsulating also drops whatever the encapsulation held outside the frames (extra fragments).
    for tag in _EXTENDED_OFFSET_TAGS:
        if tag in ds:
            del ds[tag]
            cleaner.record(tag, "X")
    if changed:
        cleaner.actions[(0x7FE00010, "stripped")] += changed  # one per frame that lost a marker segment
    return Window(out, 0, file_size(out)), headers


def _clean_native(
    ds: Dataset, raw: Any, handle: IO[bytes], syntax: UID, samples_total: int, cleaner: _Cleaner
) -> IO[bytes] | bytes:
    """Trim native pixel data to the frames the header declares, and clear every bit outside BitsStored/HighBit.
    Returns the new value, of even length: the bytes when the value was read with the header (small images), else
    a buffered view of the input that pydicom writes a block at a time, masking each block as it is read (nothing
    is copied first).

    Old devices embedded overlays (annotation text, names) in the unused high bits; a viewer that ignores
    BitsStored would show them. Signed samples are sign-extended from HighBit so their values do not change.
    """
    source, start, length = _pixel_value(raw, handle)
    length = max(length, 0)
    in_memory = raw.value is not None  # read with the header (under DEFER_BYTES): cleaned in one piece, no view
    allocated = _int(ds, "BitsAllocated") or 8
    expected = math.ceil(samples_total * allocated / 8)
    if length > expected + expected % 2:
        length = expected
        cleaner.record(0x7FE00010, "trimmed")
    stored = _int(ds, "BitsStored") or allocated
    if not (allocated in (8, 16, 32) and stored < allocated):
        if in_memory:
            return _even(raw.value[:length])
        return Window(source, start, length, pad=length % 2 == 1)
    high = _int(ds, "HighBit")
    high = stored - 1 if high is None else high
    if stored < 1 or not stored - 1 <= high < allocated:
        raise UploadRejected("The DICOM attributes BitsStored and HighBit do not agree.", "dicom_invalid")
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    dtype = np.dtype(f"{order}u{allocated // 8}")
    full = (1 << allocated) - 1
    mask = ((1 << stored) - 1) << (high + 1 - stored)
    above = full & ~((1 << (high + 1)) - 1)
    signed = _int(ds, "PixelRepresentation") == 1

    def masked(block: bytes) -> bytes:
        count = len(block) // dtype.itemsize
        samples = np.frombuffer(block, dtype=dtype, count=count).astype(dtype.newbyteorder("="))
        kept = samples & mask
        if signed:
            kept = np.where(kept & (1 << high), kept | above, kept)
        return kept.astype(dtype).tobytes() + block[count * dtype.itemsize :]

    cleaner.record(0x7FE00010, "masked")
    if in_memory:
        return _even(masked(raw.value[:length]))
    return Window(source, start, length, pad=length % 2 == 1, transform=masked, unit=dtype.itemsize)


def _even(value: bytes) -> bytes:
    """A value of even length (one zero byte appended to an odd one), as DICOM writes it."""
    return value + b"\x00" if len(value) % 2 else value
