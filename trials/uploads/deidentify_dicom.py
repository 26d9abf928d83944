"""De-identify ophthalmic DICOM objects with the PS3.15 Annex E Basic Application Level Confidentiality Profile.

What happens to a file, in order:

1. Parse (without touching pixel data), refuse Encapsulated PDF and SOP classes the trials do not take,
   refuse BurnedInAnnotation/RecognizableVisualFeatures YES (and, by default, image objects that do not say),
   and check Rows x Columns x NumberOfFrames x SamplesPerPixel against a budget **before** anything could
   decode pixels (pydicom has no decompression-bomb guard).
2. Walk every element, recursively through all nested sequences (OCT per-frame functional groups, Humphrey
   sequences that repeat the patient's name), and keep only what the IOD's allow-list (``dicom_allowlist``) keeps:
   the attributes the product needs to display and analyse the object and the Type 2 identity attributes the IOD
   requires present; everything else goes, private elements and free text included. Kept attributes then take
   their ``ps315_table.BASIC_PROFILE`` action (names, dates and IDs emptied or dummied, UIDs replaced) and Clean
   Descriptors: a code meaning is replaced by the standard meaning of its code value (or dropped), code strings,
   numbers and code values must look like what their VR holds. Every element is classified by the DICOM
   dictionary's VR, never the VR the file claims: a name written as LO is still a name, a tag the dictionary does
   not know is removed, and an element whose file VR holds another kind of value than the dictionary's is removed.
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
   file meta information, serialise (``dicom_writer``: the bytes pydicom's ``dcmwrite`` writes, and every byte
   around the pixel data value for the check), and check that no identifying value read from the input survived
   in the serialisation of every element but the pixel data, nor in the compressed frames' marker segments, and
   that no name part or patient, order or device identifier, however short, is a word of any kept text value
   (``dicom_leaks``).

Speed: values are read from the file's bytes where they are plain strings, and only the elements whose values are
needed are decoded; ``tests/benchmarks/bench_deidentify.py`` compares the pipeline with dicognito.

Pixel data is never decoded here (``frame_image`` decodes one frame on demand, behind the same budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, Any, Final

from pydicom import config
from pydicom.config import settings
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
)

from trials.uploads.dicom_allowlist import allowed_for
from trials.uploads.dicom_dataset import (
    _EXTENDED_OFFSET_TAGS,
    _NATIVE_SYNTAXES,
    _PIXEL_DATA_TAGS,
    DEFAULT_MAX_PIXELS,
    _check_image,
    _check_syntax,
    _int,
    _read,
    _transfer_syntax,
)
from trials.uploads.dicom_elements import (
    PATIENT_ID,
    DatePolicy,
    DeidentifyOptions,
    _age_years_from_as,
    _Cleaner,
    _parse_da,
    uid_for,
)
from trials.uploads.dicom_frames import frame_image
from trials.uploads.dicom_leaks import _assert_no_leak, _identifying_values, _outside_pixel_value, _written_text
from trials.uploads.dicom_pixels import _clean_encapsulated, _clean_native
from trials.uploads.dicom_writer import write_file
from trials.uploads.errors import PDF_REFUSAL, UploadRejected
from trials.uploads.spool import Source, as_file, file_size, spooled
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


PIXEL_DATA: Final = 0x7FE00010
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
    file: IO[bytes]  # the de-identified file, at its start (in memory when small, else an unnamed temporary file)
    size: int
    report: tuple[ActionRecord, ...]
    metadata: DicomMetadata
    options_used: tuple[str, ...]  # DICOM codes written to DeidentificationMethodCodeSequence
    visual_field: VisualField | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def report_dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.report]

    @property
    def data(self) -> bytes:
        """The whole file in memory: for small files and tests; the upload path streams ``file``."""
        self.file.seek(0)
        data = self.file.read()
        self.file.seek(0)
        return data


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
# Public entry point
# --------------------------------------------------------------------------------------------------------------
_CODE_MEANINGS: Final = {
    "113100": "Basic Application Confidentiality Profile",
    "113105": "Clean Descriptors Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
}


def deidentify_dicom(source: Source, *, options: DeidentifyOptions) -> DeidentifiedDicom:
    """De-identify one DICOM file (bytes, or a seekable binary file). Raises UploadRejected for files the trial
    cannot take.

    The pixel data is never in memory whole: it stays in ``source`` while the header is cleaned, and is copied (and
    masked, or rewritten frame by frame) into the output, a megabyte or one frame at a time; the output is written
    to a spooled temporary file in ``options.spool_dir``.

    Precondition: ``source`` is the whole file (size already limited by ``detect_file_kind``).
    """
    handle = as_file(source)
    ds = _read(handle)
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

    cleaner = _Cleaner(options, allowed=allowed_for(sop_class), perimetry=sop_class == VISUAL_FIELD_STATIC)
    # The image's pixel data is taken out before the walk (which would read it into memory) and cleaned below.
    pixels = ds.get_item(PIXEL_DATA, keep_deferred=True) if frames is not None else None
    if pixels is not None:
        del ds[PIXEL_DATA]
    cleaner.clean(ds)
    frame_headers: list[bytes] = []
    if frames is None:  # perimetry measurements have no image: pixel data there is not part of the object
        for tag in _PIXEL_DATA_TAGS + _EXTENDED_OFFSET_TAGS:
            if tag in ds:
                del ds[tag]
                cleaner.record(tag, "X")
    elif pixels is not None and str(getattr(pixels, "VR", None) or "OB") not in ("OB", "OW", "UN", "OB or OW"):
        cleaner.record(PIXEL_DATA, "X")  # pixel data written as another VR (text, numbers): not an image, removed
    elif pixels is not None and rows and columns and samples:
        if syntax in _NATIVE_SYNTAXES:
            value = _clean_native(ds, pixels, handle, syntax, rows * columns * frames * samples, cleaner)
            vr = (
                str(pixels.VR)
                if pixels.VR in ("OB", "OW")
                else ("OW" if (_int(ds, "BitsAllocated") or 8) > 8 else "OB")
            )
            ds.add(DataElement(PIXEL_DATA, vr, value))
        else:
            value, frame_headers = _clean_encapsulated(ds, pixels, handle, syntax, frames, cleaner, options.spool_dir)
            ds.add(DataElement(PIXEL_DATA, "OB", value, is_undefined_length=True))
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
    out = spooled(options.spool_dir)
    parts = write_file(ds, out, syntax)  # every byte but the pixel data value, for the leak check
    if parts is None:  # an encoding pydicom would change on writing: pydicom writes it
        ds.save_as(out, enforce_file_format=True)
        outside = _outside_pixel_value(out, file_size(out), ds)
    else:
        outside = list(parts)
    size = file_size(out)
    _assert_no_leak([*outside, *frame_headers], leaks, written=_written_text(ds), output=ds)
    out.seek(0)

    report = tuple(
        ActionRecord(*_report_names(tag), action=action, count=count)
        for (tag, action), count in sorted(cleaner.actions.items())
    )
    return DeidentifiedDicom(
        file=out,
        size=size,
        report=report,
        metadata=metadata,
        options_used=options_used,
        visual_field=visual_field,
        warnings=tuple(warnings),
    )


@lru_cache(maxsize=4096)  # bounded: a file can carry any number of private and unknown tags
def _report_names(tag: int) -> tuple[str, str]:
    """An attribute's keyword and "(GGGG,EEEE)", as the report names it."""
    keyword = keyword_for_tag(tag) or ("(private)" if (tag >> 16) & 1 else "(unknown)")
    return keyword, f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _put(ds: Dataset, keyword: str, value: Any) -> None:
    """``setattr(ds, keyword, value)`` for an attribute the dataset does not hold, without pydicom's attribute
    machinery: a new element with the dictionary's VR, its value validated as setting an attribute validates it.

    A string value that passes pydicom's validation (raising on any error) is validated and converted once per
    process: the markers and trial attributes are the same in every file of a trial."""
    tag, vr = _keyword_entry(keyword)
    mode = settings.writing_validation_mode
    plain = _plain_value(tag, vr, value) if type(value) in (str, UID) else None
    if plain is None:
        ds[tag] = DataElement(tag, vr, value, validation_mode=mode)
    else:
        ds[tag] = DataElement(tag, vr, plain, already_converted=True, validation_mode=mode)


@lru_cache(maxsize=128)
def _keyword_entry(keyword: str) -> tuple[BaseTag, str]:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return BaseTag(tag), dictionary_VR(tag)


@lru_cache(maxsize=1024, typed=True)
def _plain_value(tag: BaseTag, vr: str, value: str) -> str | None:
    """The value a new element holds for ``value`` when pydicom's validation raises no error on it and it is one
    immutable string (no backslash splitting it into several); None otherwise (the element is then made anew, its
    value validated under the writing validation mode, so an invalid value warns or raises as before)."""
    try:
        converted = DataElement(tag, vr, value, validation_mode=config.RAISE).value
    except Exception:
        return None
    return converted if type(converted) in (str, UID) else None


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
            _put(ds, keyword, value)
    codes = ["113100", "113105"]
    method = ["PS3.15 E.1 Basic Application Confidentiality Profile", "Visus: per-IOD allow-list"]
    method.append("Visus: UIDs replaced by keyed HMAC-SHA256 (2.25)")
    if options.date_policy == DatePolicy.REMOVE:
        _put(ds, "LongitudinalTemporalInformationModified", "REMOVED")
        method.append("Visus: dates removed")
    else:
        codes.append("113107")
        _put(ds, "LongitudinalTemporalInformationModified", "MODIFIED")
        method.append("Visus: dates shifted" if options.date_policy == DatePolicy.SHIFT else "Visus: year kept")
    if options.retain_patient_characteristics:
        codes.append("113108")
    _put(ds, "PatientIdentityRemoved", "YES")
    _put(ds, "DeidentificationMethod", method)
    items = []
    for code in codes:
        item = Dataset()
        _put(item, "CodeValue", code)
        _put(item, "CodingSchemeDesignator", "DCM")
        _put(item, "CodeMeaning", _CODE_MEANINGS[code])
        items.append(item)
    _put(ds, "DeidentificationMethodCodeSequence", Sequence(items))
    return tuple(codes)


def _file_meta(ds: Dataset, syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    _put(meta, "MediaStorageSOPClassUID", ds[0x00080016].value)  # SOPClassUID
    _put(meta, "MediaStorageSOPInstanceUID", ds[0x00080018].value)  # SOPInstanceUID
    _put(meta, "TransferSyntaxUID", syntax)
    _put(meta, "ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID)
    _put(meta, "ImplementationVersionName", "VISUS_DEID_1")
    return meta
