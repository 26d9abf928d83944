"""The leak check: identifying values read from the input must not survive anywhere in the output's bytes (every
element but the pixel data, and the compressed frames' marker segments), and no name part or identifier, however
short, may be among the words of the output's text values."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BufferedIOBase
from typing import IO, Final

from pydicom import dcmread
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.fileutil import buffer_length
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from trials.uploads.dicom_dataset import DEFER_BYTES
from trials.uploads.errors import UploadRejected
from trials.uploads.spool import as_file

_PIXEL_DATA: Final = 0x7FE00010
_PN_TAGS: Final = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "PN")
_SQ_TAGS: Final = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")
# Identifiers of the patient, the order and the device: every one is looked for in the output, whatever its length.
_ID_TAGS: Final = frozenset(
    {
        0x00100020,  # PatientID
        0x00101000,  # OtherPatientIDs (retired)
        0x00080050,  # AccessionNumber
        0x00200010,  # StudyID
        0x00401001,  # RequestedProcedureID
        0x00400009,  # ScheduledProcedureStepID
        0x00400253,  # PerformedProcedureStepID
        0x00402016,  # PlacerOrderNumberImagingServiceRequest
        0x00402017,  # FillerOrderNumberImagingServiceRequest
        0x00401006,  # PlacerOrderNumberProcedure (retired)
        0x00401007,  # FillerOrderNumberProcedure (retired)
        0x00402006,  # PlacerOrderNumberImagingServiceRequestRetired
        0x00402007,  # FillerOrderNumberImagingServiceRequestRetired
        0x00181000,  # DeviceSerialNumber
        0x00181002,  # DeviceUID
        0x00181003,  # DeviceID
        0x00181010,  # SecondaryCaptureDeviceID
        0x00081010,  # StationName
        0x00100030,  # PatientBirthDate
    }
)
# Dictionary VRs of the names and identifiers whose values ``_strings`` can decode from the file's bytes.
_PN_TAGS_VR: Final = {
    tag: entry[0]
    for tag, entry in DicomDictionary.items()
    if tag in _PN_TAGS or (tag in _ID_TAGS and entry[0] in ("LO", "SH"))
}
_WORD: Final = re.compile(rb"[a-z0-9]+")
# Text Visus writes itself, or replaces from the standard's tables: not searched by tokens (a patient called
# "Patient", or "Retinal", must not match the markers or a standard code meaning).
_WRITTEN_TAGS: Final = frozenset(
    {
        0x00100010,  # PatientName: the subject pseudonym
        0x00100020,  # PatientID: the subject pseudonym
        0x00080005,  # SpecificCharacterSet: "ISO_IR 100" is a character set, not a number of anyone's
        0x00080104,  # CodeMeaning: the standard meaning of the code, or removed
        0x00120062,  # PatientIdentityRemoved
        0x00120063,  # DeidentificationMethod
        0x00280303,  # LongitudinalTemporalInformationModified
    }
)
_TRIAL_GROUP_TAGS: Final = range(0x00120010, 0x00120090)  # Clinical Trial Subject/Study/Series attributes


@dataclass(frozen=True)
class IdentifyingValues:
    """What must not survive: ``values`` are searched as bytes in every byte of the output but the pixels (long
    enough not to match by chance in binary data); ``needles`` are every name part and identifier, tokenised
    (" li ", " mrn 123 "), searched among the words of every text value of the output, with no length floor."""

    values: tuple[bytes, ...]
    needles: tuple[bytes, ...]


def _identifying_values(ds: Dataset) -> IdentifyingValues:
    """Every name part (of every person named in the file) and every patient, order and device identifier."""
    names: set[str] = set()
    ids: set[str] = set()
    _collect(ds, names, ids, depth=0)
    values = {p for p in names if len(p) >= 4} | {i for i in ids if len(i) >= 6}
    needles: set[bytes] = set()
    for value in names | ids:
        words = _WORD.findall(value.lower().encode("utf-8", "ignore"))
        if words:
            needles.add(b" " + b" ".join(words) + b" ")
    return IdentifyingValues(
        values=tuple(v.lower().encode("utf-8", "ignore") for v in values if v), needles=tuple(sorted(needles))
    )


def _collect(ds: Dataset, names: set[str], ids: set[str], *, depth: int) -> None:
    latin_1 = None  # read once, at the first name or identifier (a property that converts the character set)
    for key in ds.keys():
        tag = int(key)
        if latin_1 is None and (tag in _PN_TAGS or tag in _ID_TAGS):
            latin_1 = ds._character_set in _LATIN_1
        if tag in _PN_TAGS:
            for value in _strings(ds, tag, bool(latin_1)):
                for part in value.replace("=", "^").split("^"):
                    if part.strip():
                        names.add(part.strip())
        elif tag in _ID_TAGS:
            ids.update(v.strip() for v in _strings(ds, tag, bool(latin_1)) if v.strip())
        elif tag in _SQ_TAGS and depth < 16:
            try:
                items = ds[tag].value or ()
            except Exception:  # noqa: S112 - an unreadable sequence is removed by the walk; nothing to collect
                continue
            for item in items:
                if isinstance(item, Dataset):
                    _collect(item, names, ids, depth=depth + 1)


# pydicom's names for the default repertoire and ISO 8859-1 (ISO_IR 100): values are decoded as Latin-1.
_LATIN_1: Final = (["iso8859"], ["latin_1"])


def _strings(ds: Dataset, tag: int, latin_1: bool) -> list[str]:
    """The element's values as strings, as pydicom decodes them. A name or a short or long string still as read
    from the file, in the default repertoire or ISO 8859-1 (``latin_1``: the dataset's character set is one of
    them), is decoded here from its bytes as pydicom would (the trailing padding of the whole name, of each
    string), without converting the element."""
    raw = ds._dict.get(BaseTag(tag))  # as ``get_item`` (a deferred value, None here, is read below by ``ds[tag]``)
    if latin_1 and type(raw) is RawDataElement and isinstance(raw.value, bytes):
        vr = _PN_TAGS_VR.get(tag)
        if vr is not None and raw.VR in (None, vr):
            if vr == "PN":
                return raw.value.decode("latin-1").rstrip("\x00 ").split("\\")
            return [v.rstrip("\x00 ") for v in raw.value.decode("latin-1").split("\\")]
    try:
        value = ds[tag].value
    except Exception:
        return []
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1").split("\\")
    if isinstance(value, list | tuple | MultiValue):
        return [str(v) for v in value]
    return [str(value)]


def _text_words(ds: Dataset) -> tuple[bytes, bytes]:
    """The words of every string value of the output (names and free text could only hide there), space-separated:
    (all of them, those outside code strings). Numbers, dates and the character set name are not words of text."""
    words: list[bytes] = []
    coded: list[bytes] = []
    _walk_text(ds, words, coded)
    return b" " + b" ".join(words + coded) + b" ", b" " + b" ".join(words) + b" "


def _elements(ds: Dataset, wanted: frozenset[str], tags: frozenset[int] = frozenset()) -> Iterator[DataElement]:
    """The elements of ``ds`` in tag order (as iterating the dataset gives them) that may have a VR in ``wanted``
    or a tag in ``tags``; an element still as read from the file with another explicit VR is passed over without
    being decoded (only an unknown, UN or missing VR can turn into another VR when decoded)."""
    elements = ds._dict
    for tag in sorted(elements, key=int):
        raw = elements[tag]
        if not isinstance(raw, RawDataElement):
            yield raw  # what ``ds[tag]`` returns for an element already converted
        elif raw.VR in (None, "UN") or raw.VR in wanted or int(tag) in tags:
            yield ds[tag]


def _walk_text(ds: Dataset, words: list[bytes], coded: list[bytes]) -> None:
    for elem in _elements(ds, _STRING_VRS | {"SQ"}):
        tag = int(elem.tag)
        if elem.VR == "SQ":
            for item in elem.value or ():
                _walk_text(item, words, coded)
        elif elem.VR in _STRING_VRS and tag not in _WRITTEN_TAGS and tag not in _TRIAL_GROUP_TAGS:
            value = elem.value
            if value is None:
                continue
            text = "\\".join(str(v) for v in value) if isinstance(value, list | tuple | MultiValue) else str(value)
            (coded if elem.VR == "CS" else words).extend(_WORD.findall(text.lower().encode("utf-8", "ignore")))


def _found_by_words(needles: Iterable[bytes], output: Dataset) -> bool:
    """Whether a name part or identifier is a word (or run of words) of the output's string values.

    No length floor, with two exceptions that would refuse clean files, not catch leaks: a name part of one or two
    letters is not looked for among code strings (a patient called "No" or "R" would otherwise match
    BurnedInAnnotation NO or Laterality R), and an identifier of one to three digits is not looked for at all (a
    StudyID "1" would match every stack ID and series number "1"; three digits identify nobody).
    """
    everything, outside_codes = _text_words(output)
    for needle in needles:
        core = needle.strip()
        if core.isdigit() and len(core) < 4:
            continue
        if needle in (outside_codes if len(core) < 3 else everything):
            return True
    return False


_STRING_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})


def _written_text(ds: Dataset) -> list[bytes]:
    """Text Visus itself wrote (markers, trial attributes, the standard's code meanings), blanked before the leak
    search: a patient called "Patient" or "Sponsor" must not match the words of the markers."""
    values: list[str] = [str(v) for v in ds.DeidentificationMethod]
    _code_meanings(ds, values)
    for tag in (
        0x00120010,  # ClinicalTrialSponsorName
        0x00120020,  # ClinicalTrialProtocolID
        0x00120021,  # ClinicalTrialProtocolName
        0x00120030,  # ClinicalTrialSiteID
        0x00120031,  # ClinicalTrialSiteName
        0x00120040,  # ClinicalTrialSubjectID
        0x00120050,  # ClinicalTrialTimePointID
        0x00100010,  # PatientName
        0x00100020,  # PatientID
    ):
        value = ds[tag].value if tag in ds._dict else None
        if value:
            values.append(str(value))
    return sorted({v.lower().encode("utf-8", "ignore") for v in values if v}, key=len, reverse=True)


def _code_meanings(ds: Dataset, values: list[str]) -> None:
    for elem in _elements(ds, frozenset({"SQ"}), frozenset({0x00080104})):
        if elem.VR == "SQ":
            for item in elem.value or ():
                _code_meanings(item, values)
        elif elem.tag == 0x00080104 and elem.value:
            values.append(str(elem.value))


def _outside_pixel_value(output: IO[bytes], size: int, ds: Dataset) -> list[bytes]:
    """Every byte of the written file except the top-level pixel data value itself.

    The value's length is the length of the value Visus wrote (its bytes, or the view pydicom streamed). Nothing an
    allow-list keeps sorts after the pixel data (7FE0,0010), so the value ends the file but for the delimiter of an
    encapsulated value, and where it starts follows from the file's size. Were anything written after it, the file
    is parsed again (its pixel data left in the file) to find where the value starts. So every other byte, whatever
    an element before or after it holds, is in the part searched, and the pixel data is never read into memory.
    """
    value = ds.get_item(_PIXEL_DATA)
    data = getattr(value, "value", None)
    if value is None or not isinstance(data, BufferedIOBase | bytes):
        output.seek(0)
        return [output.read()]
    length = buffer_length(data) if isinstance(data, BufferedIOBase) else len(data) + len(data) % 2
    if max(int(tag) for tag in ds.keys()) == _PIXEL_DATA:
        start = size - length - (8 if value.is_undefined_length else 0)  # the delimiter: (FFFE,E0DD), length 0
    else:
        written = dcmread(as_file(output), defer_size=DEFER_BYTES)
        start = int(getattr(written.get_item(_PIXEL_DATA, keep_deferred=True), "value_tell", 0))
    output.seek(0)
    before = output.read(start)
    output.seek(start + length)
    after = output.read(size - start - length)
    return [before, after]


def _assert_no_leak(
    parts: Iterable[bytes], leaks: IdentifyingValues, *, written: Iterable[bytes], output: Dataset
) -> None:
    """Refuse the file if an identifying value read from the input is in any of ``parts`` (the non-pixel
    serialisation and the compressed frames' marker segments), after blanking the text Visus wrote itself, or if a
    name part or identifier is among the words of the output's text values."""
    written = list(written)
    found = False
    for part in parts:
        text = part.lower()
        for value in written:
            text = text.replace(value, b"\x00")
        if any(value in text for value in leaks.values):
            found = True
            break
    if not found and leaks.needles:
        found = _found_by_words(leaks.needles, output)
    if found:
        raise UploadRejected(
            "De-identification could not confirm that every identifying value was removed from this file, so "
            "it was refused. Please contact the trial's data manager.",
            "deidentification_incomplete",
        )
