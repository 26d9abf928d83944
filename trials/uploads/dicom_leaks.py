"""The leak check: identifying values read from the input must not survive anywhere in the output's bytes (every
element but the pixel data, and the compressed frames' marker segments)."""

from __future__ import annotations

import io
from collections.abc import Iterable

from pydicom.dataset import Dataset

from trials.uploads.dicom_dataset import _PIXEL_DATA_TAGS
from trials.uploads.errors import UploadRejected


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
