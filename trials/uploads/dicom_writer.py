"""Serialising a de-identified dataset: the bytes pydicom's ``dcmwrite(..., enforce_file_format=True)`` writes, a
few times faster, and the parts the leak check searches without parsing the output again.

pydicom's writer spends most of a small file's time on per-element bookkeeping (a buffer per element, encoding
lookups, validation). Here the elements whose encoding is plain are written directly: values as read from the file
(same transfer syntax, so the same bytes), code strings, dates, UIDs, ASCII text in a single-byte or UTF-8 character
set, binary numbers and byte values. Every other element (person names, number strings, sequences, text in other
character sets, undefined lengths) is handed to pydicom's own ``write_data_element``, and a dataset whose encoding
pydicom would change on writing (another transfer syntax or character set than it was read with) is written by
``dcmwrite`` itself. ``tests/trials/test_uploads_deidentify_dicom.py`` checks the bytes against ``dcmwrite``.
"""

from __future__ import annotations

from io import BufferedIOBase
from struct import pack
from typing import IO, Any, Final

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from trials.uploads.spool import CHUNK

__all__ = ["write_file"]

PIXEL_DATA: Final = 0x7FE00010
_LONG: Final = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_STRING_PADDING: Final = {
    "AE": b" ",
    "AS": b" ",
    "CS": b" ",
    "DA": b" ",
    "DT": b" ",
    "TM": b" ",
    "UR": b" ",
    "UI": b"\0",
}
_TEXT: Final = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})
# Character sets in which an ASCII string is encoded as its ASCII bytes by pydicom (no escape sequences).
_PLAIN_CHARSETS: Final = frozenset({"iso8859", "", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})
_NUMBERS: Final = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_SEQUENCE_DELIMITER: Final = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def write_file(ds: Dataset, out: IO[bytes], syntax: UID) -> tuple[bytes, bytes] | None:
    """Write ``ds`` (its ``preamble`` and ``file_meta`` included) to ``out`` in the DICOM File Format.

    Returns every byte written before and after the top-level pixel data value (for the leak check), or None when
    pydicom would re-encode the dataset on writing (nothing is written then: use ``dcmwrite``).
    """
    implicit, little = bool(syntax.is_implicit_VR), bool(syntax.is_little_endian)
    if ds.original_encoding != (implicit, little) or ds.original_character_set != ds._character_set:
        return None
    if any(tag >> 16 in (0, 2) for tag in ds._dict):
        return None  # dcmwrite refuses command and file meta elements in the dataset
    charset = ds.get("SpecificCharacterSet", "iso8859")
    head = bytearray(ds.preamble or bytes(128))
    head += b"DICM"
    head += _file_meta(ds)
    tail = bytearray()
    pixels = None
    elements = ds._dict
    for tag in sorted(elements, key=int):  # (ints compare in C; tags compare in Python)
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # group lengths are not written (PS3.5 7.2)
        elem = _item(ds, tag)
        if int(tag) == PIXEL_DATA and isinstance(elem, DataElement) and elem.VR in ("OB", "OW"):
            pixels = elem
            head += _header(
                tag, elem.VR, 0xFFFFFFFF if elem.is_undefined_length else _length(elem.value), implicit, little
            )
            continue
        (tail if pixels is not None else head).extend(_element(elem, implicit, little, charset))
    out.write(head)
    if pixels is not None:
        _write_value(out, pixels.value)
        if pixels.is_undefined_length:
            tail[:0] = _SEQUENCE_DELIMITER if little else b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
    out.write(tail)
    return bytes(head), bytes(tail)


def _file_meta(ds: Dataset) -> bytes:
    """The File Meta Information group as ``write_file_meta_info(enforce_standard=True)`` writes it: with its group
    length and, when missing, the version (00 01); ``ds.file_meta`` is left as it is."""
    meta = ds.file_meta
    body = bytearray()
    if 0x00020001 not in meta._dict:
        body += _header(0x00020001, "OB", 2, False, True) + b"\x00\x01"
    for tag in sorted(meta._dict, key=int):
        if tag != 0x00020000:
            body += _element(_item(meta, tag), False, True, "iso8859")
    return _header(0x00020000, "UL", 4, False, True) + pack("<L", len(body)) + body


def _length(value: Any) -> int:
    """The length pydicom writes for a value: what is left of a buffer (written as it is), or the bytes padded."""
    if isinstance(value, BufferedIOBase):
        here = value.tell()
        size = value.seek(0, 2)
        value.seek(here)
        return size - here
    return len(value) + len(value) % 2


def _write_value(out: IO[bytes], value: Any) -> None:
    if isinstance(value, BufferedIOBase):
        here = value.tell()
        written = 0
        while block := value.read(CHUNK):
            written += out.write(block)
        value.seek(here)
    else:
        written = out.write(value)
    if written % 2:
        out.write(b"\x00")


def _header(tag: int, vr: str | None, length: int, implicit: bool, little: bool) -> bytes:
    order = "<" if little else ">"
    if implicit:
        return pack(order + "HHL", tag >> 16, tag & 0xFFFF, length)
    if vr in _LONG:
        return pack(order + "HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    return pack(order + "HH2sH", tag >> 16, tag & 0xFFFF, str(vr).encode(), length)


def _element(elem: DataElement | RawDataElement, implicit: bool, little: bool, charset: Any) -> bytes:
    if type(elem) is DataElement and elem.VR == "SQ":
        body = _items(elem, implicit, little, charset) if elem.value else b""
        if elem.is_undefined_length:
            end = _SEQUENCE_DELIMITER if little else b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
            return _header(int(elem.tag), "SQ", 0xFFFFFFFF, implicit, little) + body + end
        return _header(int(elem.tag), "SQ", len(body), implicit, little) + body
    value = _value(elem, little, charset)
    if value is None:  # not a plain case: pydicom writes it
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = little, implicit
        write_data_element(fp, elem, charset)
        return bytes(fp.getvalue())
    vr = elem.VR
    if not implicit and (len(vr or "") != 2 or (vr not in _LONG and len(value) > 0xFFFF)):
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = little, implicit
        write_data_element(fp, elem, charset)
        return bytes(fp.getvalue())
    return _header(int(elem.tag), vr, len(value), implicit, little) + value


def _items(elem: DataElement, implicit: bool, little: bool, charset: Any) -> bytes:
    """A sequence's items as ``write_sequence_item`` writes them (each with its length, or with an item delimiter
    when it was read with an undefined length), their elements as ``write_dataset`` writes them."""
    start, delimiter = (
        (b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0\x00\x00\x00\x00")
        if little
        else (b"\xff\xfe\xe0\x00", b"\xff\xfe\xe0\x0d\x00\x00\x00\x00")
    )
    out = bytearray()
    for item in elem.value:
        body = _dataset(item, implicit, little, charset)
        if getattr(item, "is_undefined_length_sequence_item", False):
            out += start + b"\xff\xff\xff\xff" + body + delimiter
        else:
            out += start + pack("<L" if little else ">L", len(body)) + body
    return bytes(out)


def _dataset(ds: Dataset, implicit: bool, little: bool, parent_charset: Any) -> bytes:
    """A nested dataset's elements, as ``write_dataset`` writes them: in tag order, without group lengths, with the
    dataset's own character set or its parent's; one read in another encoding or character set has its ambiguous
    VRs corrected and every value decoded first, so that it is encoded anew."""
    decode = ds.original_encoding != (implicit, little) or ds.original_character_set != ds._character_set
    if decode:
        ds = correct_ambiguous_vr(ds, little)
    charset = ds.get("SpecificCharacterSet", parent_charset)
    out = bytearray()
    for tag in sorted(ds._dict, key=int):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue
        out += _element(ds[tag] if decode else _item(ds, tag), implicit, little, charset)
    return bytes(out)


def _item(ds: Dataset, tag: BaseTag) -> DataElement | RawDataElement:
    """``ds.get_item(tag)`` for a tag the dataset holds, without converting the tag: the element as stored, a
    deferred one read from the file."""
    elem = ds._dict[tag]
    if type(elem) is RawDataElement and elem.value is None:
        return ds.get_item(tag)
    return elem


def _value(elem: DataElement | RawDataElement, little: bool, charset: Any) -> bytes | None:
    """The encoded value of a plain element (padded as pydicom pads it), or None."""
    if isinstance(elem, RawDataElement):
        value = elem.value
        return value if isinstance(value, bytes) and elem.length != 0xFFFFFFFF else None
    if elem.is_undefined_length:
        return None
    vr, value = elem.VR, elem.value
    if vr == "SQ":
        return None
    if value is None or (isinstance(value, str | bytes | list | tuple | MultiValue) and not len(value)):
        return b""
    padding = _STRING_PADDING.get(vr)
    if padding is not None or (vr in _TEXT and isinstance(charset, str) and charset in _PLAIN_CHARSETS):
        text = _joined(value)
        if text is None:
            return None
        data = text.encode("ascii")
        return data + (padding or b" ") if len(data) % 2 else data
    fmt = _NUMBERS.get(vr)
    if fmt is not None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return pack(("<" if little else ">") + fmt, value)
        if vr != "SS" and isinstance(value, list | MultiValue) and all(type(v) in (int, float) for v in value):
            # (SS lists go to pydicom: a LUT descriptor's first value is written as US whatever the VR)
            return pack(f"{'<' if little else '>'}{len(value)}{fmt}", *value)
        return None
    if vr in ("OB", "OW") and type(value) is bytes:
        return value + b"\x00" if len(value) % 2 else value
    return None


def _joined(value: Any) -> str | None:
    """A string value, or the values of a multi-valued one joined by backslashes; None unless plain ASCII str."""
    if type(value) is str or isinstance(value, UID):
        text = str(value)
    elif isinstance(value, list | tuple | MultiValue) and all(type(v) is str or isinstance(v, UID) for v in value):
        text = "\\".join(str(v) for v in value)
    else:
        return None
    return text if text.isascii() else None
