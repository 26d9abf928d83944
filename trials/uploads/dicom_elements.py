"""Element actions: the walk over every element (nested sequences included) that removes what the IOD's allow-list
(``dicom_allowlist``) does not keep, replaces code meanings by the standard's, holds kept values to Clean
Descriptors, applies the PS3.15 Basic Profile table to what remains, and applies defence-in-depth rules to kept
attributes the table does not list. Also the options that govern it, keyed-HMAC UIDs, date policies and dummy values.
"""

from __future__ import annotations

import hmac
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final

from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from trials.uploads.dicom_allowlist import NESTED, PERIMETRY_GROUP, clean_text, standard_meaning
from trials.uploads.dicom_dataset import _PIXEL_DATA_TAGS, DEFAULT_MAX_PIXELS
from trials.uploads.ps315_table import ACTIONS

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

CODE_MEANING: Final = 0x00080104
# Value representations whose kept values are held to Clean Descriptors (see ``dicom_allowlist.clean_text``).
_DESCRIPTOR_VRS: Final = frozenset({"CS", "AS", "IS", "DS", "SH", "LO", "LT", "ST", "UT", "UC", "PN"})

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
    spool_dir: str | None = None  # where large outputs spill to an unnamed temporary file (None: the system's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "date_policy", DatePolicy(self.date_policy))  # accept the plain string too
        if len(self.uid_key) < 16:
            raise ValueError("uid_key must be at least 16 bytes")
        if not self.subject_pseudonym.strip():
            raise ValueError("subject_pseudonym is required")
        if self.date_policy == DatePolicy.SHIFT and self.date_shift_days == 0:
            raise ValueError("DatePolicy.SHIFT needs a non-zero date_shift_days")


# --------------------------------------------------------------------------------------------------------------
# UIDs
# --------------------------------------------------------------------------------------------------------------
def uid_for(key: bytes, uid: str) -> str:
    """Deterministic replacement UID: HMAC-SHA256(key, uid) as an RFC 9562 version-8 UUID under ``2.25.``.

    Same key and UID give the same result in every file, so cross-file references still resolve; without the key
    the mapping cannot be inverted or recomputed from a guessed original. The result is at most 44 characters.
    """
    digest = hmac.digest(key, uid.strip("\x00 ").encode("ascii", "replace"), "sha256")
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
    def __init__(
        self, options: DeidentifyOptions, *, allowed: frozenset[int] | None = None, perimetry: bool = False
    ) -> None:
        """``allowed``: the IOD's top-level allow-list (None: no allow-list, only the table); ``perimetry`` also
        keeps the Visual Field measurement attributes (group 0024) at every depth."""
        self.options = options
        self.allowed = allowed
        self.perimetry = perimetry
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
            if all(v in UID_dictionary for v in _values(ds, tag, vr) if v):
                return None
            return "U"
        return None

    # -- actions ---------------------------------------------------------------------------------------------
    def clean(self, ds: Dataset, *, nested: bool = False) -> None:
        # The dataset's own dict is walked (a copy of its keys: elements are deleted and replaced on the way); a tag
        # the allow-list drops is deleted by the key it is stored under, before anything reads or converts it.
        allowed = None if self.allowed is None else (NESTED if nested else self.allowed)
        perimetry = self.perimetry
        actions = self.actions
        elements = ds._dict
        for key in list(elements):
            tag = int(key)
            if allowed is not None and tag not in allowed and not (perimetry and tag >> 16 == PERIMETRY_GROUP):
                del ds[key]
                actions[(tag, "X")] += 1
                continue
            raw = elements.get(key)
            if type(raw) is RawDataElement and raw.value is None:
                raw = ds.get_item(key)  # a deferred value is read, as ``get_item`` reads it
            if raw is None:
                continue
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
            if tag == CODE_MEANING:
                self._standard_meaning(ds)
                continue
            if (code is None or code == "K") and vr in _DESCRIPTOR_VRS and tag not in self.forced:
                if vr in _FREE_TEXT_VRS or vr == "PN" or not clean_text(vr, _values(ds, tag, vr)):
                    # Clean Descriptors: a kept attribute holds what its VR is for, or goes.
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

    def _standard_meaning(self, item: Dataset) -> None:
        """Replace a code meaning by the standard meaning of its code value, or drop it when there is none."""
        scheme = str(item.get("CodingSchemeDesignator", "") or "")
        value = str(item.get("CodeValue", "") or item.get("LongCodeValue", "") or "")
        meaning = standard_meaning(scheme, value) if scheme and value else None
        if meaning is None:
            del item[CODE_MEANING]
            self.record(CODE_MEANING, "X")
        else:
            item[CODE_MEANING] = DataElement(CODE_MEANING, "LO", meaning)
            self.record(CODE_MEANING, "C")

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
        # The new value is written with the dictionary VR, whatever VR the file gave the element; the old value is
        # read only where the new one is made from it (UIDs, dates).
        values = _values(ds, tag, vr) if action in ("U", "C") or (action == "D" and vr == "UI") else []
        if vr == "UN":
            elem = ds[tag]
        else:
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
    choices = _dictionary_vrs(tag)
    if choices is None:
        return None
    if len(choices) == 1:
        return choices[0]
    file_vr = str(getattr(raw, "VR", "") or "")
    return file_vr if file_vr in choices else choices[0]


@lru_cache(maxsize=4096)  # bounded: a file can carry any number of tags the dictionary does not know
def _dictionary_vrs(tag: int) -> tuple[str, ...] | None:
    """The dictionary's VR of a tag, its options for an ambiguous one; None when the dictionary does not know it."""
    try:
        entry = str(dictionary_VR(tag))
    except KeyError:
        return None
    return tuple(v.strip() for v in entry.split(" or "))


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


# Value representations whose values pydicom decodes as plain strings in the default repertoire (what ``_values``
# can read from the file's bytes without converting the element).
_PLAIN_STRING_VRS: Final = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI"})


def _values(ds: Dataset, tag: int, vr: str | None) -> list[str]:
    """``_text_values(ds[tag])``, read from the element's bytes when it is still as read from the file and its value
    is a plain string (decoded as pydicom decodes it: ISO 8859-1, split at backslashes), so that an element about
    to be kept or replaced is not converted first."""
    raw = ds.get_item(tag)
    if (
        isinstance(raw, RawDataElement)
        and vr in _PLAIN_STRING_VRS
        and raw.VR in (None, vr)
        and isinstance(raw.value, bytes)
    ):
        text = raw.value.decode("latin-1")
        return [v.strip("\x00 ") for v in text.split("\\")]
    return _text_values(ds[tag])


def _text_values(elem: DataElement) -> list[str]:
    """An element's value as a list of strings (bytes of a UN element decoded as ASCII), for UIDs and dates."""
    value = elem.value
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("ascii", "replace").strip("\x00 ")
        return [v.strip("\x00 ") for v in text.split("\\")] if text else []
    if isinstance(value, str) or not isinstance(value, list | tuple | MultiValue):
        return [str(value).strip("\x00 ")]
    return [str(v).strip("\x00 ") for v in value]


def _cap_age(ds: Dataset) -> None:
    age = _age_years_from_as(str(ds.get("PatientAge", "") or ""))
    if age is not None and age > 89:
        ds.PatientAge = "090Y"


def _age_years_from_as(value: str) -> float | None:
    value = value.strip().upper()
    if len(value) != 4 or not value[:3].isdigit():
        return None
    n = int(value[:3])
    return {"Y": n, "M": n / 12, "W": n / 52.1775, "D": n / 365.25}.get(value[3])
