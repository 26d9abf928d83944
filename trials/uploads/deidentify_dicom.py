"""De-identify ophthalmic DICOM objects with the PS3.15 Annex E Basic Application Level Confidentiality Profile.

What happens to a file, in order:

1. Parse (without touching pixel data), refuse Encapsulated PDF and SOP classes the trials do not take,
   refuse BurnedInAnnotation/RecognizableVisualFeatures YES (and, by default, image objects that do not say),
   and check Rows x Columns x NumberOfFrames x SamplesPerPixel against a budget **before** anything could
   decode pixels (pydicom has no decompression-bomb guard).
2. Walk every element, recursively through all nested sequences (OCT per-frame functional groups, Humphrey
   sequences that repeat the patient's name), and apply ``ps315_table.BASIC_PROFILE``; remove every private
   element; apply defence-in-depth rules to attributes the table does not list (names, dates, free text, URLs,
   DICOMDIR fields, UIDs the standard does not define). Every element is classified by the DICOM dictionary's
   VR, never the VR the file claims: a name written as LO is still a name, a tag the dictionary does not know is
   removed, and an element whose file VR holds another kind of value than the dictionary's is removed.
   Sequences whose table action is D (Content, Graphic Annotation, Person Identification Code...) are emptied:
   none is Type 1 in an accepted IOD, and their items are where identifiers hide.
3. Replace UIDs with a keyed HMAC-SHA256 under ``2.25.`` so references between files of one trial still
   resolve but cannot be reversed without the trial's key.
4. Clean the pixel data without decoding it: native pixels are masked to the bits BitsStored/HighBit allow (old
   overlays hid text in the bits above) and trimmed to the frames the header declares; every JPEG / JPEG-LS
   frame is rewritten with only the markers a decoder needs (COM, EXIF, IPTC, XMP... go), JPEG 2000 / HTJ2K
   codestreams lose their comment (COM) segments, RLE frames are re-encapsulated as they are, and any other
   compression (MPEG, HEVC, deflate, unknown) is refused.
5. Write the subject pseudonym, the de-identification markers and the Clinical Trial attributes, rebuild the
   file meta information, serialise, and check that no identifying value read from the input survived in the
   serialisation of every element but the pixel data, nor in the compressed frames' marker segments.

Pixel data is never decoded here (``frame_image`` decodes one frame on demand, behind the same budget).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Final

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array
from pydicom.sequence import Sequence
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    JPEG2000MC,
    PYDICOM_IMPLEMENTATION_UID,
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

from trials.uploads.errors import PDF_REFUSAL, UploadRejected
from trials.uploads.ps315_table import ACTIONS
from trials.uploads.visual_field import VisualField, visual_field_from_dicom

__all__ = [
    "ACCEPTED_SOP_CLASSES",
    "DEFAULT_MAX_PIXELS",
    "ActionRecord",
    "DatePolicy",
    "DeidentifiedDicom",
    "DeidentifyOptions",
    "DicomMetadata",
    "deidentify_dicom",
    "frame_image",
    "uid_for",
]

# Samples, not bytes: a 1024 x 1024 x 128-frame OCT volume is 134 M; a 24 Mpx RGB fundus photo is 72 M.
DEFAULT_MAX_PIXELS: Final = 200_000_000

OP_8_BIT: Final = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
OP_16_BIT: Final = "1.2.840.10008.5.1.4.1.1.77.1.5.2"
OCT: Final = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
VISUAL_FIELD_STATIC: Final = "1.2.840.10008.5.1.4.1.1.80.1"
SECONDARY_CAPTURE: Final = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF: Final = "1.2.840.10008.5.1.4.1.1.104.1"

# SOP class -> (name, modality); Secondary Capture is classified from its Modality attribute.
ACCEPTED_SOP_CLASSES: Final[dict[str, tuple[str, str | None]]] = {
    OP_8_BIT: ("Ophthalmic Photography 8 Bit Image", "fundus"),
    OP_16_BIT: ("Ophthalmic Photography 16 Bit Image", "fundus"),
    OCT: ("Ophthalmic Tomography Image", "oct"),
    VISUAL_FIELD_STATIC: ("Ophthalmic Visual Field Static Perimetry Measurements", "visual_field"),
    SECONDARY_CAPTURE: ("Secondary Capture Image", None),
}
_SC_MODALITY = {"OPT": "oct", "OPV": "visual_field"}  # anything else (OP, XC, OT, ...) is graded as a photograph

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

# Attributes whose compound action must fall through to a dummy because they are Type 1 in an accepted IOD
# (Ophthalmic Photography / Tomography Image modules, Enhanced General Equipment): removing them would make the
# object invalid. Everything else takes the first (most protective) action.
_TYPE1_DUMMY: Final = frozenset(
    {
        0x0008002A,  # AcquisitionDateTime (X/Z/D)
        0x00080023,  # ContentDate (Z/D)
        0x00080033,  # ContentTime (Z/D)
        0x00181000,  # DeviceSerialNumber (X/Z/D)
    }
)
# X/Z/U* sequences kept with their UIDs replaced: they hold only references (an OCT's fundus localizer, source
# images), and consistent HMAC UIDs keep those links inside the trial. Their items are cleaned by the same table.
_KEEP_REFERENCE_SEQUENCES: Final = frozenset({0x00081140, 0x00082112})  # ReferencedImageSequence, SourceImageSequence

_FREE_TEXT_VRS: Final = frozenset({"LT", "ST", "UT", "UC"})
# Value representations by what their value is, to tell a mislabelled element (a name written as OB, a number
# written as LO) from a harmless variant (US written as SS). An element whose file VR falls in another class than
# its dictionary VR cannot be interpreted reliably, so it is removed.
_TEXT_VRS: Final = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_NUMBER_VRS: Final = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_DATE_VRS: Final = frozenset({"DA", "DT"})

# Kept under the Retain Patient Characteristics option (113108); free-text characteristics (allergies, history)
# stay removed because they can hold anything.
_PATIENT_CHARACTERISTICS: Final = frozenset({0x00100040, 0x00101010, 0x00101020, 0x00101030})  # sex, age, size, wt

PATIENT_NAME: Final = 0x00100010
PATIENT_ID: Final = 0x00100020


class DatePolicy(StrEnum):
    """What happens to dates. The trial keeps study-day offsets itself, so the default removes them."""

    REMOVE = "remove"  # table actions: Z/X, dummy where Type 1 (LongitudinalTemporalInformationModified=REMOVED)
    SHIFT = "shift"  # every date moved by ``date_shift_days`` (113107, MODIFIED)
    KEEP_YEAR = "keep_year"  # HIPAA Safe Harbor allows the year: DA -> YYYY0101, DT -> YYYY (113107, MODIFIED)


@dataclass(frozen=True)
class DeidentifyOptions:
    """Per-trial, per-upload parameters.

    ``uid_key`` is the trial's secret (at least 16 bytes); ``subject_pseudonym`` must be issued by the trial,
    never derived from the patient's identifiers (45 CFR 164.514(c)).
    """

    uid_key: bytes
    subject_pseudonym: str
    sponsor_name: str
    protocol_id: str
    site_id: str
    time_point_id: str
    protocol_name: str = ""
    site_name: str = ""
    date_policy: DatePolicy = DatePolicy.REMOVE
    date_shift_days: int = 0
    retain_patient_characteristics: bool = False
    subject_age_years: float | None = None  # from the CRF; used for visual-field analysis when given
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_missing_burned_in_annotation: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "date_policy", DatePolicy(self.date_policy))  # accept the plain string too
        if len(self.uid_key) < 16:
            raise ValueError("uid_key must be at least 16 bytes")
        if not self.subject_pseudonym.strip():
            raise ValueError("subject_pseudonym is required")
        if self.date_policy == DatePolicy.SHIFT and self.date_shift_days == 0:
            raise ValueError("DatePolicy.SHIFT needs a non-zero date_shift_days")


@dataclass(frozen=True)
class ActionRecord:
    """One line of the de-identification report: what was done to an attribute, never its value."""

    keyword: str
    tag: str  # "(GGGG,EEEE)"
    action: str
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {"keyword": self.keyword, "tag": self.tag, "action": self.action, "count": self.count}


@dataclass(frozen=True)
class DicomMetadata:
    modality: str  # fundus | oct | visual_field
    sop_class_uid: str
    sop_class_name: str
    rows: int | None
    columns: int | None
    frames: int | None
    samples_per_pixel: int | None
    bits_allocated: int | None
    bits_stored: int | None
    photometric_interpretation: str | None
    transfer_syntax_uid: str
    laterality: str | None  # OD | OS | OU
    patient_age_years: float | None  # capped at 90 (HIPAA: ages over 89 are "90 or older")


@dataclass(frozen=True)
class DeidentifiedDicom:
    data: bytes
    report: tuple[ActionRecord, ...]
    metadata: DicomMetadata
    options_used: tuple[str, ...]  # DICOM codes written to DeidentificationMethodCodeSequence
    visual_field: VisualField | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def report_dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.report]


# --------------------------------------------------------------------------------------------------------------
# UIDs
# --------------------------------------------------------------------------------------------------------------
def uid_for(key: bytes, uid: str) -> str:
    """Deterministic replacement UID: HMAC-SHA256(key, uid) as an RFC 9562 version-8 UUID under ``2.25.``.

    Same key and UID give the same result in every file, so cross-file references still resolve; without the key
    the mapping cannot be inverted or recomputed from a guessed original. The result is at most 44 characters.
    """
    digest = hmac.new(key, uid.strip("\x00 ").encode("ascii", "replace"), hashlib.sha256).digest()
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom UUID
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
    return "2.25." + str(int.from_bytes(raw, "big"))


# --------------------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------------------
def _parse_da(value: str) -> date | None:
    value = value.strip()
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def _shift_da(value: str, days: int) -> str | None:
    parsed = _parse_da(value)
    return None if parsed is None else (parsed + timedelta(days=days)).strftime("%Y%m%d")


def _shift_dt(value: str, days: int) -> str | None:
    # The UTC offset (&ZZXX) can hint at the site's location, so it is dropped; precision finer than a day stays.
    value = value.strip().split("+")[0].split("-")[0]
    head = _shift_da(value[:8], days) if len(value) >= 8 else None
    return None if head is None else head + value[8:]


def _year_only(value: str, vr: str) -> str | None:
    value = value.strip()
    if len(value) < 4 or not value[:4].isdigit():
        return None
    return value[:4] + "0101" if vr == "DA" else value[:4]


# --------------------------------------------------------------------------------------------------------------
# Dummy values (action D)
# --------------------------------------------------------------------------------------------------------------
_DUMMY_BY_VR: Final[dict[str, Any]] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "PN": "ANONYMOUS",
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMOUS",
    "SH": "ANONYMOUS",
    "LO": "ANONYMOUS",
    "LT": "ANONYMOUS",
    "ST": "ANONYMOUS",
    "UT": "ANONYMOUS",
    "UC": "ANONYMOUS",
    "UR": "",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
    "AT": 0,
    "OB": b"\x00\x00",
    "OW": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "UN": b"\x00\x00",
}


# --------------------------------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------------------------------
class _Cleaner:
    def __init__(self, options: DeidentifyOptions) -> None:
        self.options = options
        self.actions: Counter[tuple[int, str]] = Counter()
        self.uid_cache: dict[str, str] = {}
        self.forced: dict[int, str] = {
            PATIENT_NAME: options.subject_pseudonym,
            PATIENT_ID: options.subject_pseudonym,
        }
        self.keep: frozenset[int] = _PATIENT_CHARACTERISTICS if options.retain_patient_characteristics else frozenset()

    # -- helpers ---------------------------------------------------------------------------------------------
    def uid(self, value: str) -> str:
        cached = self.uid_cache.get(value)
        if cached is None:
            cached = self.uid_cache[value] = uid_for(self.options.uid_key, value)
        return cached

    def record(self, tag: int, action: str) -> None:
        self.actions[(tag, action)] += 1

    # -- decisions -------------------------------------------------------------------------------------------
    def _resolve(self, tag: int, vr: str, code: str) -> str:
        """Turn a table code (possibly compound) into one action for this element."""
        if tag in self.forced:
            return "D"
        if tag in self.keep:
            return "K"
        if "/" in code:
            choices = code.split("/")
            if tag in _KEEP_REFERENCE_SEQUENCES:
                return "U*"
            code = "D" if tag in _TYPE1_DUMMY and "D" in choices else choices[0]
        if vr in _DATE_VRS or vr == "TM":
            return self._date_action(tag, vr, code)
        return code

    def _date_action(self, tag: int, vr: str, code: str) -> str:
        policy = self.options.date_policy
        if policy == DatePolicy.REMOVE or tag == 0x00100030 or code == "U":  # birth date stays per the table
            return code
        if vr == "TM":
            # Time of day is kept with shifted dates (intervals survive); with year-only dates it goes too.
            return "K" if policy == DatePolicy.SHIFT else code
        return "C"

    def _unlisted_action(self, tag: int, vr: str | None, ds: Dataset) -> str | None:
        """Defence in depth for attributes Table E.1-1 does not list. None means keep."""
        group = tag >> 16
        if group & 1:
            return "X"  # private
        if tag & 0xFFFF == 0 or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            return "X"  # group lengths (stale after edits), curves, overlays (can carry annotation text)
        if group == 0x0004:
            return "X"  # DICOMDIR directory records (file-set IDs, file paths) never belong in an object
        if vr is None:
            return "X"  # not in the dictionary: nobody can say what it holds, whatever VR the file claims
        if vr == "SQ":
            return None
        if vr == "PN":
            return "X"
        if vr in _DATE_VRS:
            return "X" if self.options.date_policy == DatePolicy.REMOVE else "C"
        if vr == "TM":
            return "K" if self.options.date_policy == DatePolicy.SHIFT else "X"
        if vr in _FREE_TEXT_VRS:
            return "X"  # comments and descriptions not in the table, e.g. perimetry performance comments
        if vr == "UR":
            return "X"  # RetrieveURL and friends: links to the hospital's archive, often with patient IDs
        if vr == "UI":
            # Only UIDs the DICOM standard defines (SOP classes, transfer syntaxes, coding schemes) identify
            # nobody; anything else, including a UID merely starting with the DICOM root, is replaced.
            if all(v in UID_dictionary for v in _text_values(ds[tag]) if v):
                return None
            return "U"
        return None

    # -- actions ---------------------------------------------------------------------------------------------
    def clean(self, ds: Dataset, *, nested: bool = False) -> None:
        for key in list(ds.keys()):
            raw = ds.get_item(key)
            if raw is None:
                continue
            tag = int(key)
            vr = _vr_of(tag, raw)
            code = ACTIONS.get(tag)
            file_vr = getattr(raw, "VR", None)
            if vr is None:
                fits = True
            elif file_vr and file_vr != "UN":  # explicit VR as read: compare without converting the value
                fits = _fits(str(file_vr), vr)
            else:
                try:
                    fits = _fits(ds[tag].VR, vr)
                except Exception:
                    fits = False  # a value pydicom cannot even convert (a broken UN sequence) is not kept
            if not fits or (nested and tag in _PIXEL_DATA_TAGS):
                # The file's VR contradicts the dictionary (a name written as OB, a number written as text), or
                # pixel data hides inside an item (only the top-level image is an image): remove it.
                del ds[tag]
                self.record(tag, "X")
                continue
            if code is None:
                unlisted = self._unlisted_action(tag, vr, ds)
                if unlisted is None:  # kept; a kept sequence still has its items cleaned
                    if vr == "SQ":
                        self._recurse(ds, tag)
                    continue
                action = unlisted
            else:
                action = self._resolve(tag, vr or "UN", code)
            self._apply(ds, tag, vr or "UN", action)

    def _recurse(self, ds: Dataset, tag: int) -> None:
        for item in ds[tag].value or ():
            self.clean(item, nested=True)

    def _apply(self, ds: Dataset, tag: int, vr: str, action: str) -> None:
        if action == "K":
            if vr == "SQ":
                self._recurse(ds, tag)
            elif tag == 0x00101010:
                _cap_age(ds)
            return
        if action == "X":
            del ds[tag]
            self.record(tag, "X")
            return
        if vr == "SQ":
            if action in ("Z", "D"):
                ds[tag].value = Sequence()
                self.record(tag, "Z")
            else:  # U*: keep the references, clean every item with the same rules
                self._recurse(ds, tag)
                self.record(tag, "U")
            return
        # The new value is written with the dictionary VR, whatever VR the file gave the element.
        values = _text_values(ds[tag])
        elem = ds[tag]
        if elem.VR != vr and vr != "UN":
            elem = ds[tag] = DataElement(tag, vr, None)
        if action == "Z":
            elem.value = None if vr not in ("OB", "OW", "UN") else b""
            self.record(tag, "Z")
        elif action == "U" or (action == "D" and vr == "UI"):
            self._replace_uids(elem, values, keep_known=ACTIONS.get(tag) is None)
            self.record(tag, "U")
        elif action == "C":
            self._clean_date(ds, tag, elem, vr, values)
        elif action == "D":
            elem.value = self.forced.get(tag, _DUMMY_BY_VR.get(vr, b"\x00\x00"))
            self.record(tag, "D")
        else:  # pragma: no cover - the table only holds the codes above
            raise ValueError(f"unknown action {action!r}")

    def _replace_uids(self, elem: DataElement, values: list[str], *, keep_known: bool) -> None:
        """HMAC every UID; with ``keep_known`` (attributes the table does not list) standard UIDs stay."""
        if not any(values):
            elem.value = None
            return
        new = [v if keep_known and v in UID_dictionary else self.uid(v) for v in values if v]
        elem.value = new[0] if len(new) == 1 else new

    def _clean_date(self, ds: Dataset, tag: int, elem: DataElement, vr: str, values: list[str]) -> None:
        def transform(v: str) -> str | None:
            if self.options.date_policy == DatePolicy.KEEP_YEAR:
                return _year_only(v, vr)
            days = self.options.date_shift_days
            return _shift_da(v, days) if vr == "DA" else _shift_dt(v, days)

        if not any(values):
            elem.value = None
            return
        cleaned = [transform(v) for v in values]
        if any(c is None for c in cleaned):
            # A value the policy cannot parse is not kept: it may be a date in a form nobody anticipated.
            del ds[tag]
            self.record(tag, "X")
            return
        elem.value = cleaned[0] if len(cleaned) == 1 else cleaned
        self.record(tag, "C")


def _vr_of(tag: int, raw: Any) -> str | None:
    """The element's VR from the DICOM dictionary, never from the file (a file can label a name LO or UN).

    For the dictionary's ambiguous VRs ('US or SS', 'OB or OW') the file's VR is used when it is one of the
    options, else the first option. None: the tag is not in the dictionary (private tags included).
    """
    try:
        entry = str(dictionary_VR(tag))
    except KeyError:
        return None
    choices = [v.strip() for v in entry.split(" or ")]
    if len(choices) == 1:
        return choices[0]
    file_vr = str(getattr(raw, "VR", "") or "")
    return file_vr if file_vr in choices else choices[0]


def _vr_class(vr: str) -> str:
    if vr == "SQ":
        return "sequence"
    if vr in _TEXT_VRS:
        return "text"
    return "number" if vr in _NUMBER_VRS else "bytes"


def _fits(file_vr: str, vr: str) -> bool:
    """Whether an element the file labelled ``file_vr`` can hold a value of the dictionary's ``vr``.

    UN (and a still-ambiguous VR) says nothing about the value, so it fits: actions rewrite it with the dictionary
    VR, and a kept one is unchanged bytes as before. Otherwise the two must hold the same kind of value.
    """
    if file_vr == vr or file_vr == "UN" or " or " in file_vr:
        return True
    return _vr_class(file_vr) == _vr_class(vr)


def _text_values(elem: DataElement) -> list[str]:
    """An element's value as a list of strings (bytes of a UN element decoded as ASCII), for UIDs and dates."""
    value = elem.value
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("ascii", "replace").strip("\x00 ")
        return [v.strip("\x00 ") for v in text.split("\\")] if text else []
    if isinstance(value, str):
        return [value.strip("\x00 ")]
    return [str(v).strip("\x00 ") for v in value]


def _cap_age(ds: Dataset) -> None:
    age = _age_years_from_as(str(ds.get("PatientAge", "") or ""))
    if age is not None and age > 89:
        ds.PatientAge = "090Y"


# --------------------------------------------------------------------------------------------------------------
# Checks before the walk
# --------------------------------------------------------------------------------------------------------------
def _read(data: bytes) -> Dataset:
    try:
        try:
            return dcmread(io.BytesIO(data))
        except InvalidDicomError:
            return dcmread(io.BytesIO(data), force=True)
    except Exception:
        # Any parser failure (truncated element, bad length, broken sequence) is a damaged upload.
        raise UploadRejected(
            "The DICOM file could not be read: it is truncated or damaged. Export it again from the device.",
            "dicom_unreadable",
        ) from None


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
        raw = ds.get_item(0x7FE00010)
        length = len(raw.value) if raw is not None and raw.value is not None else 0
        if length < expected:
            raise UploadRejected(
                "The DICOM image's pixel data is shorter than its header says: the file is truncated.", "truncated"
            )
    return rows, columns, frames, samples


def _age_years_from_as(value: str) -> float | None:
    value = value.strip().upper()
    if len(value) != 4 or not value[:3].isdigit():
        return None
    n = int(value[:3])
    return {"Y": n, "M": n / 12, "W": n / 52.1775, "D": n / 365.25}.get(value[3])


def _patient_age(ds: Dataset) -> float | None:
    age = _age_years_from_as(str(ds.get("PatientAge", "") or ""))
    if age is None:
        # Age at the visit from birth and acquisition dates, read here before de-identification removes both.
        birth = _parse_da(str(ds.get("PatientBirthDate", "") or ""))
        visits = (_parse_da(str(ds.get(k, "") or "")[:8]) for k in ("AcquisitionDateTime", "ContentDate", "StudyDate"))
        visit = next((v for v in visits if v is not None), None)
        if birth is not None and visit is not None:
            age = (visit - birth).days / 365.25
    if age is None or age < 0:
        return None
    return min(round(age, 2), 90.0)


def _laterality(ds: Dataset) -> str | None:
    value = str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "").strip().upper()
    if not value:
        for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            groups = ds.get(keyword)
            anatomy = groups[0].get("FrameAnatomySequence") if groups else None
            if anatomy:
                value = str(anatomy[0].get("FrameLaterality", "") or "").strip().upper()
                break
    return {"R": "OD", "L": "OS", "B": "OU"}.get(value)


# --------------------------------------------------------------------------------------------------------------
# Pixel data
# --------------------------------------------------------------------------------------------------------------
def _check_syntax(syntax: UID) -> None:
    if syntax not in _ACCEPTED_SYNTAXES:
        raise UploadRejected(
            "The image is stored with a compression (transfer syntax) whose embedded metadata cannot be removed "
            "safely (for example MPEG or HEVC video, deflate, or an unknown format). Export it again uncompressed "
            "or as JPEG.",
            "compression_refused",
        )


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


def _clean_encapsulated(ds: Dataset, syntax: UID, frames: int, cleaner: _Cleaner) -> list[bytes]:
    """Rewrite every compressed frame (see the module docstring) and re-encapsulate one fragment per frame.

    Returns the frames' marker segments for the leak check. Nothing is decoded.
    """
    elem = ds.get_item(0x7FE00010)
    if elem is None or elem.value is None:
        return []
    offsets = None
    if all(t in ds for t in _EXTENDED_OFFSET_TAGS):
        offsets = (ds[_EXTENDED_OFFSET_TAGS[0]].value, ds[_EXTENDED_OFFSET_TAGS[1]].value)
    try:
        originals = list(generate_frames(bytes(ds.PixelData), number_of_frames=frames, extended_offsets=offsets))
    except Exception:
        raise _damaged() from None
    if len(originals) != frames:
        raise _damaged()
    cleaned: list[bytes] = []
    headers: list[bytes] = []
    changed = 0
    for original in originals:
        if syntax in _JPEG_2000_SYNTAXES:
            frame, header, dropped = _strip_jpeg2000(original)
        elif syntax == RLELossless:  # RLE segments hold only run-length codes: the frame is kept as it is
            frame, header, dropped = original, b"", False
        else:
            frame, header, dropped = _strip_jpeg(original, ls=syntax in _JPEG_LS_SYNTAXES)
        cleaned.append(frame)
        headers.append(header)
        changed += dropped
    # Re-encapsulating also drops whatever the encapsulation held outside the frames (extra fragments).
    ds.PixelData = encapsulate(cleaned)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    for tag in _EXTENDED_OFFSET_TAGS:
        if tag in ds:
            del ds[tag]
            cleaner.record(tag, "X")
    if changed:
        cleaner.actions[(0x7FE00010, "stripped")] += changed  # one per frame that lost a marker segment
    return headers


def _clean_native(ds: Dataset, syntax: UID, samples_total: int, cleaner: _Cleaner) -> None:
    """Trim native pixel data to the frames the header declares, and clear every bit outside BitsStored/HighBit.

    Old devices embedded overlays (annotation text, names) in the unused high bits; a viewer that ignores
    BitsStored would show them. Signed samples are sign-extended from HighBit so their values do not change.
    """
    elem = ds.get_item(0x7FE00010)
    if elem is None or elem.value is None:
        return
    raw = bytes(ds.PixelData)
    allocated = _int(ds, "BitsAllocated") or 8
    expected = math.ceil(samples_total * allocated / 8)
    if len(raw) > expected + expected % 2:
        raw = raw[:expected]
        cleaner.record(0x7FE00010, "trimmed")
    stored = _int(ds, "BitsStored") or allocated
    if allocated in (8, 16, 32) and stored < allocated:
        high = _int(ds, "HighBit")
        high = stored - 1 if high is None else high
        if stored < 1 or not stored - 1 <= high < allocated:
            raise UploadRejected("The DICOM attributes BitsStored and HighBit do not agree.", "dicom_invalid")
        order = ">" if syntax == ExplicitVRBigEndian else "<"
        dtype = np.dtype(f"{order}u{allocated // 8}")
        count = len(raw) // dtype.itemsize
        samples = np.frombuffer(raw, dtype=dtype, count=count).astype(dtype.newbyteorder("="))
        full = (1 << allocated) - 1
        kept = samples & (((1 << stored) - 1) << (high + 1 - stored))
        if _int(ds, "PixelRepresentation") == 1:
            above = full & ~((1 << (high + 1)) - 1)
            kept = np.where(kept & (1 << high), kept | above, kept)
        raw = kept.astype(dtype).tobytes() + raw[count * dtype.itemsize :]
        cleaner.record(0x7FE00010, "masked")
    if raw != ds.PixelData:
        ds.PixelData = raw


def _identifying_values(ds: Dataset) -> list[bytes]:
    """Values that must not survive anywhere in the output's header bytes (lower-case)."""
    found: set[str] = set()
    name = str(ds.get("PatientName", "") or "")
    for part in name.replace("=", "^").split("^"):
        if len(part.strip()) >= 4:
            found.add(part.strip())
    for keyword in ("PatientID", "AccessionNumber", "OtherPatientIDs"):
        value = ds.get(keyword)
        for v in [value] if isinstance(value, str) else list(value or ()):
            if len(str(v).strip()) >= 6:
                found.add(str(v).strip())
    birth = str(ds.get("PatientBirthDate", "") or "").strip()
    if len(birth) == 8:
        found.add(birth)
    return [v.lower().encode("utf-8", "ignore") for v in found if v]


# --------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------
_CODE_MEANINGS: Final = {
    "113100": "Basic Application Confidentiality Profile",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
}


def deidentify_dicom(data: bytes, *, options: DeidentifyOptions) -> DeidentifiedDicom:
    """De-identify one DICOM file. Raises UploadRejected for files the trial cannot take.

    Precondition: ``data`` is the whole file (size already limited by ``detect_file_kind``).
    """
    ds = _read(data)
    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    if not sop_class:
        raise UploadRejected(
            "The DICOM file could not be read: it declares no SOP Class (it is damaged or not an image object).",
            "dicom_unreadable",
        )
    if sop_class == ENCAPSULATED_PDF:
        raise UploadRejected(PDF_REFUSAL, "pdf_printout")
    if sop_class not in ACCEPTED_SOP_CLASSES:
        raise UploadRejected(
            "This DICOM object type is not accepted. Upload Ophthalmic Photography, Ophthalmic Tomography (OCT), "
            "Visual Field Static Perimetry Measurements or Secondary Capture images.",
            "sop_class_refused",
        )
    sop_name, modality = ACCEPTED_SOP_CLASSES[sop_class]
    if modality is None:
        modality = _SC_MODALITY.get(str(ds.get("Modality", "") or "").upper(), "fundus")
    syntax = _transfer_syntax(ds)
    _check_syntax(syntax)

    rows = columns = frames = samples = None
    if sop_class != VISUAL_FIELD_STATIC:
        rows, columns, frames, samples = _check_image(
            ds,
            syntax,
            max_pixels=options.max_pixels,
            allow_missing_burned_in_annotation=options.allow_missing_burned_in_annotation,
        )

    age = options.subject_age_years if options.subject_age_years is not None else _patient_age(ds)
    metadata = DicomMetadata(
        modality=modality,
        sop_class_uid=sop_class,
        sop_class_name=sop_name,
        rows=rows,
        columns=columns,
        frames=frames,
        samples_per_pixel=samples,
        bits_allocated=_int(ds, "BitsAllocated"),
        bits_stored=_int(ds, "BitsStored"),
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "") or "") or None,
        transfer_syntax_uid=str(syntax),
        laterality=_laterality(ds),
        patient_age_years=age,
    )
    leaks = _identifying_values(ds)

    cleaner = _Cleaner(options)
    cleaner.clean(ds)
    frame_headers: list[bytes] = []
    if frames is None:  # perimetry measurements have no image: pixel data there is not part of the object
        for tag in _PIXEL_DATA_TAGS + _EXTENDED_OFFSET_TAGS:
            if tag in ds:
                del ds[tag]
                cleaner.record(tag, "X")
    elif rows and columns and samples:
        if syntax in _NATIVE_SYNTAXES:
            _clean_native(ds, syntax, rows * columns * frames * samples, cleaner)
        else:
            frame_headers = _clean_encapsulated(ds, syntax, frames, cleaner)
    options_used = _write_markers(ds, options, cleaner)

    warnings: list[str] = []
    visual_field = None
    if modality == "visual_field" and sop_class == VISUAL_FIELD_STATIC:
        if age is None:
            warnings.append("The patient's age is unknown, so the visual field was not analysed.")
        else:
            try:
                visual_field = visual_field_from_dicom(ds, age=age)
            except UploadRejected as exc:
                warnings.append(exc.message)

    ds.file_meta = _file_meta(ds, syntax)
    ds.preamble = b"\x00" * 128  # the input's preamble can hold anything (dual-personality TIFF headers)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    result = out.getvalue()
    _assert_no_leak([*_outside_pixel_value(result, ds), *frame_headers], leaks, written=_written_text(ds))

    report = tuple(
        ActionRecord(
            keyword=keyword_for_tag(tag) or ("(private)" if (tag >> 16) & 1 else "(unknown)"),
            tag=f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
            action=action,
            count=count,
        )
        for (tag, action), count in sorted(cleaner.actions.items())
    )
    return DeidentifiedDicom(
        data=result,
        report=report,
        metadata=metadata,
        options_used=options_used,
        visual_field=visual_field,
        warnings=tuple(warnings),
    )


def _write_markers(ds: Dataset, options: DeidentifyOptions, cleaner: _Cleaner) -> tuple[str, ...]:
    for tag, value in cleaner.forced.items():
        if tag not in ds:
            ds.add_new(tag, "LO" if tag == PATIENT_ID else "PN", value)
            cleaner.record(tag, "D")
    trial = {
        "ClinicalTrialSponsorName": options.sponsor_name,
        "ClinicalTrialProtocolID": options.protocol_id,
        "ClinicalTrialProtocolName": options.protocol_name,
        "ClinicalTrialSiteID": options.site_id,
        "ClinicalTrialSiteName": options.site_name,
        "ClinicalTrialSubjectID": options.subject_pseudonym,
        "ClinicalTrialTimePointID": options.time_point_id,
    }
    for keyword, value in trial.items():
        if value:
            setattr(ds, keyword, value)
    codes = ["113100"]
    method = ["PS3.15 E.1 Basic Application Confidentiality Profile", "Visus: private tags removed"]
    method.append("Visus: UIDs replaced by keyed HMAC-SHA256 (2.25)")
    if options.date_policy == DatePolicy.REMOVE:
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        method.append("Visus: dates removed")
    else:
        codes.append("113107")
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        method.append("Visus: dates shifted" if options.date_policy == DatePolicy.SHIFT else "Visus: year kept")
    if options.retain_patient_characteristics:
        codes.append("113108")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method
    items = []
    for code in codes:
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = _CODE_MEANINGS[code]
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    return tuple(codes)


def _file_meta(ds: Dataset, syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "VISUS_DEID_1"
    return meta


def _written_text(ds: Dataset) -> list[bytes]:
    """Text Visus itself wrote (markers, trial attributes), blanked before the leak search: a patient called
    "Patient" or "Sponsor" must not match the words of the markers."""
    values: list[str] = [str(v) for v in ds.DeidentificationMethod]
    values += [str(item.CodeMeaning) for item in ds.DeidentificationMethodCodeSequence]
    for keyword in (
        "ClinicalTrialSponsorName",
        "ClinicalTrialProtocolID",
        "ClinicalTrialProtocolName",
        "ClinicalTrialSiteID",
        "ClinicalTrialSiteName",
        "ClinicalTrialSubjectID",
        "ClinicalTrialTimePointID",
        "PatientName",
        "PatientID",
    ):
        if ds.get(keyword):
            values.append(str(ds.get(keyword)))
    return sorted({v.lower().encode("utf-8", "ignore") for v in values if v}, key=len, reverse=True)


def _outside_pixel_value(result: bytes, ds: Dataset) -> list[bytes]:
    """Every byte of the written file except the top-level pixel data value itself.

    The value is the last top-level element's payload, written verbatim, so its last occurrence in the file is
    it: whatever an element before it holds (even bytes that look like the pixel data tag) stays in the part
    searched. Cheaper than serialising the file a second time without its pixels, which is the fallback.
    """
    values = [ds.get_item(tag).value for tag in _PIXEL_DATA_TAGS if tag in ds]
    value = values[0] if len(values) == 1 else None
    if isinstance(value, bytes | bytearray) and len(value) >= 1024:
        # Usually nothing follows it and the check is one comparison; otherwise search from the end.
        start = len(result) - len(value) if result.endswith(value) else result.rfind(value)
        if start > 0:
            return [result[:start], result[start + len(value) :]]
    return [_serialised_without_pixels(ds)]


def _serialised_without_pixels(ds: Dataset) -> bytes:
    """The file as written, minus its top-level pixel data: every other element serialised with the same transfer
    syntax and character set, so no element can hide from the leak search (nested items included)."""
    header = Dataset()
    for elem in ds:
        if elem.tag not in _PIXEL_DATA_TAGS:
            header.add(elem)
    header.file_meta = ds.file_meta
    header.preamble = ds.preamble
    out = io.BytesIO()
    header.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _assert_no_leak(parts: Iterable[bytes], leaks: Iterable[bytes], *, written: Iterable[bytes]) -> None:
    """Refuse the file if an identifying value read from the input is in any of ``parts`` (the non-pixel
    serialisation and the compressed frames' marker segments), after blanking the text Visus wrote itself."""
    leaks, written = list(leaks), list(written)
    for part in parts:
        text = part.lower()
        for value in written:
            text = text.replace(value, b"\x00")
        if any(value in text for value in leaks):
            raise UploadRejected(
                "De-identification could not confirm that every identifying value was removed from this file, so "
                "it was refused. Please contact the trial's data manager.",
                "deidentification_incomplete",
            )


# --------------------------------------------------------------------------------------------------------------
# One decoded frame, for previews and network input
# --------------------------------------------------------------------------------------------------------------
def frame_image(data: bytes, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode one frame of a DICOM image to an 8-bit PIL image (L or RGB), after the pixel-budget check.

    Precondition: ``data`` is a file ``deidentify_dicom`` produced or accepted.
    """
    ds = _read(data)
    syntax = _transfer_syntax(ds)
    _, _, frames, _ = _check_image(ds, syntax, max_pixels=max_pixels, allow_missing_burned_in_annotation=False)
    if not 0 <= frame < frames:
        raise ValueError(f"frame {frame} out of range (0..{frames - 1})")
    arr = pixel_array(ds, index=frame if frames > 1 else None)
    arr = np.asarray(arr)
    bits = _int(ds, "BitsStored") or 8
    if arr.dtype != np.uint8 or bits > 8:
        arr = np.clip(arr.astype(np.float64) * 255.0 / (2**bits - 1), 0, 255).round().astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = 255 - arr
    return Image.fromarray(arr)
