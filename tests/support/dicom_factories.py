"""Synthetic ophthalmic DICOM objects for the upload tests, built with pydicom and seeded with fake PHI.

Every identifying value contains "CANARY" (or is the fake birth date) so a byte search on the output proves that
de-identification removed it, wherever the value was hidden.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from trials.uploads.deidentify_dicom import (
    ENCAPSULATED_PDF,
    OCT,
    OP_8_BIT,
    OP_16_BIT,
    SECONDARY_CAPTURE,
    VISUAL_FIELD_STATIC,
)
from trials.uploads.visual_field import COORDINATES

CANARY_NAME = "CANARY^PATIENT"
CANARY_ID = "MRN-CANARY-123"
CANARY_BIRTH_DATE = "19610203"
CANARY_STRINGS = (
    b"CANARY",
    b"canary",
    b"Canary",
    CANARY_ID.encode(),
    CANARY_BIRTH_DATE.encode(),
    b"1961-02-03",
    b"20240315",  # the fake visit date
)
FUNDUS_SOP_INSTANCE_UID = "1.2.826.0.1.3680043.8.498.11111111111111111111"  # referenced by the OCT factory


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _patient_and_study(ds: Dataset, modality: str) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = CANARY_NAME
    ds.PatientID = CANARY_ID
    ds.PatientBirthDate = CANARY_BIRTH_DATE
    ds.PatientSex = "F"
    ds.PatientAge = "063Y"
    ds.OtherPatientIDs = "OTHER-CANARY-456"
    ds.PatientAddress = "1 Canary Wharf, London"
    ds.PatientTelephoneNumbers = "+44 20 CANARY"
    ds.EthnicGroup = "CANARY"
    ds.PatientComments = "Canary comment about the patient"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyDate = "20240315"
    ds.StudyTime = "101112"
    ds.SeriesDate = "20240315"
    ds.SeriesTime = "101112"
    ds.ContentDate = "20240315"
    ds.ContentTime = "101112"
    ds.AcquisitionDateTime = "20240315101112.000000+0100"
    ds.InstanceCreationDate = "20240315"
    ds.AccessionNumber = "ACC-CANARY-77"
    ds.StudyID = "CANARY-STUDY"
    ds.Modality = modality
    ds.InstitutionName = "Canary Eye Hospital"
    ds.InstitutionAddress = "Canary Road 1"
    ds.ReferringPhysicianName = "DR^CANARY"
    ds.PerformingPhysicianName = "DR^CANARYPERF"
    ds.OperatorsName = "TECH^CANARY"
    ds.StationName = "CANARY-CAM-01"
    ds.DeviceSerialNumber = "SN-CANARY-999"
    ds.Manufacturer = "Synthetic Optics"
    ds.ManufacturerModelName = "Fundus 3000"
    ds.StudyDescription = "Canary study description"
    ds.SeriesDescription = "Canary series description"
    ds.ProtocolName = "Canary protocol"
    ds.ImageComments = "Patient CANARY^PATIENT seemed tired"
    ds.ClinicalTrialSponsorName = "Other sponsor CANARY"
    # Private block, as device vendors write them.
    block = ds.private_block(0x0009, "CANARY VENDOR", create=True)
    block.add_new(0x01, "LO", CANARY_NAME)
    block.add_new(0x02, "SH", "CANARY-PRIV")
    # Nested sequences hiding the name again, several levels deep (real Humphrey exports repeat it).
    inner = Dataset()
    inner.PatientName = CANARY_NAME
    inner.PersonName = "CANARY^PERSON"
    inner.add_new(0x00111001, "LO", "CANARY IN PRIVATE INSIDE SEQUENCE")  # odd group inside an item
    request = Dataset()
    request.RequestedProcedureID = "REQ-CANARY-1"
    request.ScheduledProcedureStepID = "SPS-CANARY-1"
    request.ReasonForTheRequestedProcedure = "Canary reason"
    ds.RequestAttributesSequence = Sequence([request])
    region = _code("T-AA610", "SRT", "Retina")
    region.AnatomicRegionModifierSequence = Sequence([inner])  # an unlisted sequence two levels down
    region.ContentCreatorName = "CANARY^CREATOR"
    ds.AnatomicRegionSequence = Sequence([region])
    text = Dataset()
    text.UnformattedTextValue = "CANARY^PATIENT annotation"
    annotation = Dataset()
    annotation.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([annotation])  # table action D on a sequence
    ds.PatientBirthDateInAlternativeCalendar = "CANARY 1961-02-03 in another calendar"
    original = Dataset()
    original.ModifiedAttributesSequence = Sequence([inner])
    original.AttributeModificationDateTime = "20240315101112"
    ds.OriginalAttributesSequence = Sequence([original])


def _finish(ds: Dataset, sop_class: str, *, preamble: bool = True) -> bytes:
    ds.SOPClassUID = sop_class
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "CANARYAE"
    ds.file_meta = meta
    out = io.BytesIO()
    if preamble:
        ds.preamble = b"CANARY".ljust(128, b"\x00")
        dcmwrite(out, ds, enforce_file_format=True)
    else:
        del ds.file_meta
        dcmwrite(out, ds, implicit_vr=False, little_endian=True, enforce_file_format=False)
    return out.getvalue()


def _image_pixels(ds: Dataset, *, rows: int, columns: int, frames: int = 1, rgb: bool, bits: int = 8) -> None:
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else 8  # 16-bit photographs usually store 12 bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    shape = (frames, rows, columns, 3) if rgb else (frames, rows, columns)
    dtype = np.uint8 if bits == 8 else np.uint16
    high = 256 if bits == 8 else 4096
    # A fundus-like field per frame (image_factories.fundus_pixels), so photographs pass the upload gate.
    from tests.support.image_factories import fundus_pixels

    frames_px = [
        fundus_pixels(rows, columns, channels=3 if rgb else 1, high=high, seed=1234 + i) for i in range(frames)
    ]
    ds.PixelData = np.stack(frames_px).astype(dtype).reshape(shape).tobytes()


def ophthalmic_photograph(
    *,
    bits: int = 8,
    rows: int = 256,
    columns: int = 256,
    burned_in: str | None = "NO",
    sop_instance_uid: str | None = FUNDUS_SOP_INSTANCE_UID,
    preamble: bool = True,
    pixels: np.ndarray | None = None,
) -> bytes:
    """``pixels`` (H x W x 3 uint8) replaces the random 8-bit image."""
    ds = Dataset()
    _patient_and_study(ds, "OP")
    if sop_instance_uid:
        ds.SOPInstanceUID = sop_instance_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality = "R"
    ds.Laterality = "R"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    _image_pixels(ds, rows=rows, columns=columns, rgb=bits == 8, bits=bits)
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return _finish(ds, OP_8_BIT if bits == 8 else OP_16_BIT, preamble=preamble)


def oct_volume(*, frames: int = 4, rows: int = 32, columns: int = 48) -> bytes:
    ds = Dataset()
    _patient_and_study(ds, "OPT")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    _image_pixels(ds, rows=rows, columns=columns, frames=frames, rgb=False)
    anatomy = Dataset()
    anatomy.FrameLaterality = "L"
    anatomy.AnatomicRegionSequence = Sequence([_code("T-AA610", "SRT", "Retina")])
    shared = Dataset()
    shared.FrameAnatomySequence = Sequence([anatomy])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for i in range(frames):
        content = Dataset()
        content.FrameAcquisitionDateTime = f"2024031510111{i}.123456"
        content.FrameReferenceDateTime = f"2024031510111{i}.123456"
        content.FrameAcquisitionNumber = i + 1
        content.FrameComments = f"CANARY frame comment {i}"
        location = Dataset()
        location.ReferencedSOPClassUID = OP_8_BIT
        location.ReferencedSOPInstanceUID = FUNDUS_SOP_INSTANCE_UID
        location.ReferenceCoordinates = [0.0, float(i), 10.0, float(i)]
        group = Dataset()
        group.FrameContentSequence = Sequence([content])
        group.OphthalmicFrameLocationSequence = Sequence([location])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    reference = Dataset()
    reference.ReferencedSOPClassUID = OP_8_BIT
    reference.ReferencedSOPInstanceUID = FUNDUS_SOP_INSTANCE_UID
    ds.ReferencedImageSequence = Sequence([reference])
    return _finish(ds, OCT)


def visual_field(
    sensitivities: tuple[float, ...], *, laterality: str = "R", md: float = -1.5, psd: float = 2.1
) -> bytes:
    """Perimetry object for a right-eye-orientation field; left eyes get native (mirrored) X coordinates."""
    ds = Dataset()
    _patient_and_study(ds, "OPV")
    ds.Manufacturer = "Carl Zeiss Meditec"  # a Humphrey field: other makers are refused
    ds.Laterality = laterality
    ds.CommentsOnPatientPerformanceOfVisualField = "CANARY^PATIENT was cooperative"
    ds.GlobalDeviationFromNormal = md
    ds.LocalizedDeviationFromNormal = psd
    fixation = Dataset()
    fixation.FixationCheckedQuantity = 14
    fixation.PatientNotProperlyFixatedQuantity = 4  # 28.6 %: unreliable under SITA practice
    ds.FixationSequence = Sequence([fixation])
    catch = Dataset()
    catch.FalsePositivesEstimateFlag = "YES"
    catch.FalsePositivesEstimate = 3.0
    catch.FalseNegativesEstimateFlag = "NO"
    catch.NegativeCatchTrialsQuantity = 10
    catch.FalseNegativesQuantity = 1
    ds.VisualFieldCatchTrialSequence = Sequence([catch])
    points = []
    for (x, y), value in zip(COORDINATES, sensitivities, strict=True):
        if value != value:  # NaN blind-spot value: not tested
            continue
        item = Dataset()
        item.VisualFieldTestPointXCoordinate = float(-x if laterality == "L" else x)
        item.VisualFieldTestPointYCoordinate = float(y)
        item.StimulusResults = "SEEN" if value > 0 else "NOT SEEN"
        item.SensitivityValue = float(max(value, 0.0))
        points.append(item)
    ds.VisualFieldTestPointSequence = Sequence(points)
    vfi = Dataset()
    vfi.ConceptNameCodeSequence = Sequence([_code("111852", "DCM", "Visual Field Index")])
    vfi.NumericValue = 97
    ght = Dataset()
    ght.ConceptNameCodeSequence = Sequence([_code("111855", "DCM", "Glaucoma Hemifield Test Analysis")])
    ght.ConceptCodeSequence = Sequence([_code("125112009", "SCT", "Within normal limits")])
    index = Dataset()
    index.DataObservationSequence = Sequence([vfi, ght])
    ds.VisualFieldGlobalResultsIndexSequence = Sequence([index])
    return _finish(ds, VISUAL_FIELD_STATIC)


def secondary_capture(*, modality: str = "OT") -> bytes:
    ds = Dataset()
    _patient_and_study(ds, modality)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "NO"
    _image_pixels(ds, rows=256, columns=256, rgb=True)
    return _finish(ds, SECONDARY_CAPTURE)


def encapsulated_pdf() -> bytes:
    ds = Dataset()
    _patient_and_study(ds, "DOC")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n% CANARY^PATIENT born 1961-02-03\n%%EOF\n"
    return _finish(ds, ENCAPSULATED_PDF)


def huge_header_image() -> bytes:
    """An image header claiming 65535 x 65535 x 1000 frames over a few bytes of pixel data."""
    ds = Dataset()
    _patient_and_study(ds, "OP")
    ds.BurnedInAnnotation = "NO"
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 1000
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = b"\x00" * 64
    return _finish(ds, OP_8_BIT)


# --------------------------------------------------------------------------------------------------------------
# Compressed frames and malformed headers
# --------------------------------------------------------------------------------------------------------------
def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def canary_jpeg(*, rows: int = 64, columns: int = 64, progressive: bool = False, seed: int = 7) -> bytes:
    """An RGB JPEG whose COM, EXIF (APP1), IPTC (APP13) and Adobe (APP14) segments and a trailer after EOI all
    carry canaries, as camera and PACS software write them. A progressive JPEG also gets a COM between scans."""
    from tests.support.image_factories import fundus_pixels

    pixels = fundus_pixels(rows, columns, seed=seed)
    exif = Image.Exif()
    exif[0x013B] = "CANARY^PATIENT (Artist)"  # Artist
    exif[0x010E] = f"{CANARY_ID} {CANARY_BIRTH_DATE}"  # ImageDescription
    out = io.BytesIO()
    Image.fromarray(pixels).save(
        out, format="JPEG", quality=90, progressive=progressive, comment=b"Patient CANARY^PATIENT", exif=exif.tobytes()
    )
    data = out.getvalue()
    iptc = jpeg_segment(0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x10CANARY IPTC NAME")
    adobe = jpeg_segment(0xEE, b"Adobe" + b"CA" + b"NA" + b"RY" + b"\x01")  # version/flags hold text; YCbCr
    data = data[:2] + iptc + adobe + data[2:]
    if progressive:  # a comment between the first scan and the next table
        first_scan = data.index(b"\xff\xda")
        next_table = data.index(b"\xff\xc4", first_scan)
        data = data[:next_table] + jpeg_segment(0xFE, b"CANARY between scans") + data[next_table:]
    return data + b"CANARY trailer after EOI"


def encapsulated_photograph(
    frames: list[bytes], *, syntax: str = JPEGBaseline8Bit, rows: int = 64, columns: int = 64, rgb: bool = True
) -> bytes:
    """An Ophthalmic Photography object (with the usual header canaries) holding ``frames`` encapsulated."""
    ds = dcmread(io.BytesIO(ophthalmic_photograph(rows=rows, columns=columns)))
    if not rgb:
        ds.SamplesPerPixel = 1
        del ds.PlanarConfiguration
    ds.PhotometricInterpretation = ("YBR_FULL_422" if syntax == JPEGBaseline8Bit else "RGB") if rgb else "MONOCHROME2"
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def jpeg_photograph(*, progressive: bool = False, size: int = 256) -> bytes:
    """A JPEG-compressed fundus photograph whose frame carries canaries in COM, EXIF, IPTC and Adobe segments."""
    frame = canary_jpeg(rows=size, columns=size, progressive=progressive)
    return encapsulated_photograph([frame], rows=size, columns=size)


def unknown_tags_photograph() -> bytes:
    """Canaries in even-group tags the DICOM dictionary does not know, with whatever VR the writer chose."""
    ds = dcmread(io.BytesIO(ophthalmic_photograph()))
    ds.add(DataElement(0x00221FFE, "LO", "CANARY^PATIENT unknown LO"))
    ds.add(DataElement(0x00221FFC, "UN", b"CANARY unknown UN "))
    ds.add(DataElement(0xFFFE0001, "LO", "CANARY in FFFE"))
    ds.AnatomicRegionSequence[0].add(DataElement(0x00221FFE, "LO", f"{CANARY_ID} nested"))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def mislabelled_vr_photograph() -> bytes:
    """Canaries in attributes written with a VR that contradicts the dictionary (a name written as LO...)."""
    ds = dcmread(io.BytesIO(ophthalmic_photograph()))
    ds.add(DataElement(0x00140104, "LO", "CANARY^REVIEWER"))  # SecondaryReviewerName is PN
    ds.add(DataElement(0x00080108, "LO", "CANARY extended meaning"))  # ExtendedCodeMeaning is LT
    ds.add(DataElement(0x00280106, "LO", "CANARY"))  # SmallestImagePixelValue is US or SS
    ds.AnatomicRegionSequence[0].add(DataElement(0x00140104, "LO", "CANARY^NESTED"))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def free_text_leaks_photograph(*, patient_name: str = CANARY_NAME, reviewer: str = "Dr CANARY") -> bytes:
    """Identifiers where the Basic Profile table does not look (issue 9): a reviewer in a code meaning, the owner in
    the model name, retired order numbers, device IDs."""
    ds = dcmread(io.BytesIO(ophthalmic_photograph()))
    ds.PatientName = patient_name
    ds.ManufacturerModelName = "CAM owned by CANARYCLINIC"
    ds.AnatomicRegionSequence[0].CodeMeaning = f"Reviewed by {reviewer}"
    ds.add(DataElement(0x00401006, "SH", "ORD-CANARY-1"))  # PlacerOrderNumberProcedure (retired)
    ds.add(DataElement(0x00401007, "SH", "ORD-CANARY-2"))  # FillerOrderNumberProcedure (retired)
    ds.add(DataElement(0x00402006, "SH", "ORD-CANARY-3"))  # PlacerOrderNumberImagingServiceRequestRetired
    ds.add(DataElement(0x00402007, "SH", "ORD-CANARY-4"))  # FillerOrderNumberImagingServiceRequestRetired
    ds.DeviceID = "DEV-CANARY-5"
    ds.SecondaryCaptureDeviceID = "SCDEV-CANARY-6"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def write_large_oct_volume(path, *, frames: int, rows: int = 1024, columns: int = 512, laterality: str = "R") -> int:
    """An Ophthalmic Tomography volume of ``frames`` B-scans of 16 bits (12 stored, noise in the 4 bits above, so
    de-identification masks them), written to ``path`` a frame at a time (never in memory whole); with the usual
    canaries in the header. 1024 x 512 is 1 MiB a frame. Returns the file's size."""
    from pathlib import Path

    path = Path(path)
    raw = path.with_name(path.name + ".pixels")
    rng = np.random.default_rng(0)
    with raw.open("wb") as handle:
        for _ in range(frames):
            handle.write(rng.integers(0, 65536, size=(rows, columns), dtype=np.uint16).tobytes())
    ds = Dataset()
    _patient_and_study(ds, "OPT")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SOPClassUID = OCT
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = OCT, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    try:
        with raw.open("rb") as pixels:
            ds.PixelData = pixels  # a buffered value: pydicom 3 copies it in chunks
            ds["PixelData"].VR = "OW"
            dcmwrite(path, ds, enforce_file_format=True)
    finally:
        raw.unlink()
    return path.stat().st_size
