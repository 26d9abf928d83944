"""What a de-identified DICOM object may keep: a per-IOD allow-list instead of a longer deny-list.

A sweep that planted a value in every text attribute of the DICOM dictionary found 1,712 of 2,361 surviving the
Basic Profile table (the table lists what to remove; everything it does not list was kept). Here the question is
reversed: an attribute survives only if the product needs it to display or analyse the object (image pixel
description, laterality, OCT geometry, the perimetry measurements, the references between an OCT and its fundus
localizer) or if the IOD requires it present (Type 2 patient and study attributes, which the Basic Profile table
then empties). Inside kept sequences only the item attributes listed in ``NESTED`` survive.

Kept values are then held to Clean Descriptors: a code meaning is replaced by the standard meaning of its code
value (from pydicom's DICOM/SNOMED concept tables; an unknown code loses its meaning), code strings must look like
code strings, numbers like numbers, and the few short-text attributes kept (code values, stack IDs) must be a
single code-like token: "CAM owned by SMITHCLINIC" cannot pass for a model name because no model name is kept.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Final, cast

from pydicom.datadict import tag_for_keyword

__all__ = [
    "NESTED",
    "PERIMETRY_GROUP",
    "allowed_for",
    "clean_text",
    "standard_meaning",
]


def _tags(*keywords: str) -> frozenset[int]:
    tags = []
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:  # pragma: no cover - a typo here must fail at import, not silently drop an attribute
            raise KeyError(keyword)
        tags.append(int(tag))
    return frozenset(tags)


OP_8_BIT: Final = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
OP_16_BIT: Final = "1.2.840.10008.5.1.4.1.1.77.1.5.2"
OCT: Final = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
VISUAL_FIELD_STATIC: Final = "1.2.840.10008.5.1.4.1.1.80.1"
SECONDARY_CAPTURE: Final = "1.2.840.10008.5.1.4.1.1.7"

# Patient, study, series, SOP common: identity attributes the IOD requires (Type 1/2; the Basic Profile table empties
# or replaces them, the subject pseudonym is written into PatientName/PatientID), plus the UIDs that tie a trial's
# files together (replaced by keyed HMACs).
COMMON: Final = _tags(
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",  # only under Retain Patient Characteristics (the table removes it otherwise)
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "Laterality",
    "FrameOfReferenceUID",
    "ContentQualification",
)

# What the pipeline and the viewers need to decode and show an image.
IMAGE: Final = _tags(
    "ImageType",
    "AcquisitionNumber",
    "PatientOrientation",
    "ContentDate",
    "ContentTime",
    "AcquisitionDateTime",
    "ImageLaterality",
    "BurnedInAnnotation",
    "RecognizableVisualFeatures",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    "PresentationLUTShape",
    "CalibrationImage",
    "QualityControlImage",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "PlanarConfiguration",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "NumberOfFrames",
    "FrameIncrementPointer",
    "PixelAspectRatio",
    "PixelSpacing",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)

# Ophthalmic Photography Image and Acquisition Parameters modules: what a grader or the DR network may use.
PHOTOGRAPHY: Final = _tags(
    "AnatomicRegionSequence",
    "AcquisitionDeviceTypeCodeSequence",
    "IlluminationTypeCodeSequence",
    "HorizontalFieldOfView",
    "PupilDilated",
    "EmmetropicMagnification",
    "IntraOcularPressure",
    "DetectorType",
    "PatientEyeMovementCommanded",
    "ReferencedImageSequence",
    "SourceImageSequence",
)

# Ophthalmic Tomography Image / Parameters and the enhanced multi-frame functional groups (geometry per frame).
TOMOGRAPHY: Final = PHOTOGRAPHY | _tags(
    "AxialLengthOfTheEye",
    "DepthSpatialResolution",
    "MaximumDepthDistortion",
    "AlongScanSpatialResolution",
    "MaximumAlongScanDistortion",
    "AcrossScanSpatialResolution",
    "MaximumAcrossScanDistortion",
    "AcquisitionDuration",
    "DimensionOrganizationType",
    "DimensionOrganizationSequence",
    "DimensionIndexSequence",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "OphthalmicVolumetricPropertiesFlag",
)

SECONDARY_CAPTURE_ONLY: Final = _tags("ConversionType")

# Static perimetry: every Visual Field module attribute is in group 0024; those the analysis reads (sensitivities,
# test-point coordinates, global indices MD/PSD/VFI/GHT, fixation and catch trials, laterality) are kept with the
# rest of the measurement attributes. Free text in the group (the operator's comments on the patient's performance)
# is not: free-text value representations are never kept.
PERIMETRY_GROUP: Final = 0x0024

# Item attributes that may survive inside a kept sequence: the code macro, image references, the functional-group
# macros of an OCT, and what the perimetry global results (VFI, GHT) are written with.
NESTED: Final = _tags(
    "CodeValue",
    "CodingSchemeDesignator",
    "CodingSchemeVersion",
    "CodeMeaning",
    "LongCodeValue",
    "URNCodeValue",
    "AnatomicRegionSequence",
    "AnatomicRegionModifierSequence",
    "PrimaryAnatomicStructureSequence",
    "ReferencedSOPClassUID",
    "ReferencedSOPInstanceUID",
    "ReferencedFrameNumber",
    "PurposeOfReferenceCodeSequence",
    "DimensionOrganizationUID",
    "DimensionIndexPointer",
    "FunctionalGroupPointer",
    "FrameContentSequence",
    "FrameAcquisitionDateTime",
    "FrameReferenceDateTime",
    "FrameAcquisitionDuration",
    "StackID",
    "InStackPositionNumber",
    "DimensionIndexValues",
    "PixelMeasuresSequence",
    "PixelSpacing",
    "SliceThickness",
    "PlanePositionSequence",
    "ImagePositionPatient",
    "PlaneOrientationSequence",
    "ImageOrientationPatient",
    "FrameAnatomySequence",
    "FrameLaterality",
    "OphthalmicFrameLocationSequence",
    "ReferenceCoordinates",
    "DepthOfTransverseImage",
    "OphthalmicImageOrientation",
    "ConceptNameCodeSequence",
    "ConceptCodeSequence",
    "NumericValue",
    "MeasurementUnitsCodeSequence",
)

_BY_SOP_CLASS: Final[dict[str, frozenset[int]]] = {
    OP_8_BIT: COMMON | IMAGE | PHOTOGRAPHY,
    OP_16_BIT: COMMON | IMAGE | PHOTOGRAPHY,
    OCT: COMMON | IMAGE | TOMOGRAPHY,
    VISUAL_FIELD_STATIC: COMMON | _tags("ContentDate", "ContentTime", "AcquisitionDateTime"),
    SECONDARY_CAPTURE: COMMON | IMAGE | PHOTOGRAPHY | SECONDARY_CAPTURE_ONLY,
}


def allowed_for(sop_class: str) -> frozenset[int]:
    """Top-level attributes an object of ``sop_class`` may keep (group 0024 is added for perimetry by the walk)."""
    return _BY_SOP_CLASS[sop_class]


# --------------------------------------------------------------------------------------------------------------
# Clean Descriptors
# --------------------------------------------------------------------------------------------------------------
@cache
def _meanings() -> dict[tuple[str, str], str]:
    """(scheme, code value) -> the standard's meaning; a meaning used in a context group wins over a synonym."""
    from pydicom.sr._concepts_dict import concepts
    from pydicom.sr._snomed_dict import mapping

    table: dict[tuple[str, str], str] = {}
    ranked: dict[tuple[str, str], bool] = {}
    for scheme, by_keyword in cast(dict[str, dict[str, dict[str, tuple[str, list[Any]]]]], concepts).items():
        for by_value in by_keyword.values():
            for value, (meaning, cids) in by_value.items():
                key = (scheme, str(value))
                in_group = bool(cids)
                if key not in table or (in_group and not ranked[key]):
                    table[key], ranked[key] = meaning, in_group
    for old, new in mapping.get("SRT", {}).items():  # retired SNOMED-RT codes ("T-AA610") -> SNOMED CT meanings
        if ("SCT", new) in table:
            table[("SRT", old)] = table[("SCT", new)]
    return table


def standard_meaning(scheme: str, value: str) -> str | None:
    """The standard meaning of a code (DCM, SCT, SRT, UCUM...), or None when the code is not in the tables."""
    scheme = scheme.strip().upper()
    value = value.strip()
    meaning = _meanings().get((scheme, value))
    if meaning is None and scheme == "UCUM":
        return value  # a unit's meaning is conventionally its code ("dB", "%")
    return meaning


_CODE_STRING: Final = re.compile(r"[A-Z0-9_ ]{0,16}")
_AGE_STRING: Final = re.compile(r"\d{3}[DWMY]")
_NUMBER: Final = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_TOKEN: Final = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


def clean_text(vr: str, values: list[str]) -> bool:
    """Whether the kept text values of an element of dictionary VR ``vr`` are what that VR may hold.

    CS: defined-term shape; AS: an age; IS/DS: numbers; SH/LO (code values, stack IDs, coding scheme versions): one
    code-like token each. Anything else that reaches here (free text, names) is not kept.
    """
    if vr == "CS":
        return all(_CODE_STRING.fullmatch(v) for v in values)
    if vr == "AS":
        return all(_AGE_STRING.fullmatch(v) for v in values if v)
    if vr in ("IS", "DS"):
        return all(_NUMBER.fullmatch(v.strip()) for v in values if v.strip())
    if vr in ("SH", "LO"):
        return all(_TOKEN.fullmatch(v) for v in values if v)
    return False
