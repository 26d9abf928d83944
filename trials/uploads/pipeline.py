"""One pipeline for every way a file comes in (page, API, import_cases): detect by content,
de-identify in memory, validate against the case, and make previews. No database, no storage here.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from typing import IO, Any

from PIL import Image

from trials.uploads.burned_in_text import FieldOfView, OcrBudget, find_text, refuse_burned_in_text
from trials.uploads.deidentify_dicom import DatePolicy, DeidentifyOptions, deidentify_dicom, frame_image
from trials.uploads.deidentify_image import (
    check_gradable_size,
    deidentify_image,
    image_to_jpeg,
    make_preview,
    make_thumbnail,
)
from trials.uploads.detect import FileKind, detect_file_kind
from trials.uploads.errors import UploadRejected
from trials.uploads.fundus_gate import (
    NOT_FUNDUS_CODE,
    FundusCheck,
    Gradability,
    assess_fundus,
    assess_gradability,
    gate_array,
)
from trials.uploads.spool import Source, as_file, file_size
from trials.uploads.visual_field import (
    DEVICE_MAP_COLUMNS,
    DEVICE_MAPS,
    N_POINTS,
    ReliabilityCriteria,
    VisualField,
    VisualFieldAnalysis,
    analyse_visual_field,
    parse_visual_field_csv,
    render_pattern_deviation_plot,
    visual_field_from_dicom_bytes,
)

logger = logging.getLogger(__name__)

PREVIEW_SIDE = 1024
THUMBNAIL_SIDE = 192
MODALITY_LABELS = {"fundus": "fundus photographs", "oct": "OCT", "visual_field": "visual fields"}


@dataclass(frozen=True)
class UploadContext:
    """What the pipeline needs to know about the case a file is meant for."""

    uid_key: bytes
    subject_pseudonym: str
    protocol_id: str
    protocol_name: str
    site_id: str
    visit_day: int
    eye: str  # OD | OS
    trial_modalities: tuple[str, ...]
    subject_age_years: float | None
    reliability: ReliabilityCriteria
    max_bytes: int
    max_pixels: int
    min_side: int
    # The coordinator's reason to store a photograph that failed the fundus check anyway (empty: refuse it).
    fundus_exception_reason: str = ""
    spool_dir: str | None = None  # where a large de-identified file waits, unnamed, until it is stored


@dataclass
class ProcessedUpload:
    modality: str
    file_format: str
    content_file: IO[bytes]  # the de-identified file, read in chunks to hash and store it
    size: int
    extension: str
    content_type: str
    sop_class: str = ""
    width: int | None = None
    height: int | None = None
    frames: int = 1
    bits: int | None = None
    report: dict[str, Any] = field(default_factory=dict)
    preview: bytes | None = None
    thumbnail: bytes | None = None
    visual_field: VisualField | None = None
    analysis: VisualFieldAnalysis | None = None
    pd_plot: bytes | None = None
    fundus_check: FundusCheck | None = None
    gradability: Gradability | None = None

    @property
    def content(self) -> bytes:
        """The whole de-identified file in memory (tests, small files); storing it streams ``content_file``."""
        self.content_file.seek(0)
        data = self.content_file.read()
        self.content_file.seek(0)
        return data


def _in_memory(content: bytes) -> dict[str, Any]:
    return {"content_file": io.BytesIO(content), "size": len(content)}


# A file that is not a DICOM object (a photograph, a CSV, anything refused) is read into memory whole only up to
# this size; a larger one is recognised from its head, so a 255 MB file of anything costs no 255 MB of memory.
# A file that begins like a photograph (JPEG, PNG, TIFF) is read whole at any size up to the upload limit: decoding
# it costs more than its file, and the pixel budget bounds that.
WHOLE_FILE_BYTES = 16 * 1024 * 1024
_HEAD_BYTES = 64 * 1024
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")


def _open_upload(source: Source, context: UploadContext) -> tuple[FileKind, Source]:
    """What the upload is, and how the pipeline reads it: a DICOM object stays in its file (``deidentify_dicom``
    streams it); anything else small enough, and every photograph, is read into memory."""
    if isinstance(source, bytes):
        return detect_file_kind(source, max_bytes=context.max_bytes), source
    handle = as_file(source)
    size = file_size(handle)
    if size > context.max_bytes:
        raise UploadRejected(
            f"The file is larger than the upload limit of {context.max_bytes // (1024 * 1024)} MB.", "too_large"
        )
    head = handle.read(_HEAD_BYTES)
    if len(head) >= 132 and head[128:132] == b"DICM":
        kind = detect_file_kind(head, max_bytes=context.max_bytes)
        if kind == FileKind.DICOM:
            return kind, handle
        # A dual-personality file (a TIFF header in the DICOM preamble) is read as its bytes would be: a photograph.
    if size <= WHOLE_FILE_BYTES or head.startswith(_IMAGE_SIGNATURES):
        handle.seek(0)
        data = handle.read()
        return detect_file_kind(data, max_bytes=context.max_bytes), data
    kind = detect_file_kind(head, max_bytes=context.max_bytes)  # refusals (PDF, ZIP, text...) from the head
    if kind == FileKind.VISUAL_FIELD_CSV:
        raise UploadRejected(
            f"This CSV is {size // (1024 * 1024)} MB: a visual-field CSV holds one test per eye and a few kilobytes. "
            "Split the file by visit.",
            "too_large",
        )
    return kind, handle  # a DICOM stream without its preamble


def process_upload(source: Source, context: UploadContext) -> ProcessedUpload:
    """De-identify and validate one file (bytes, or a seekable binary file) for one case, or raise UploadRejected
    with a clear message. A DICOM file is never read into memory whole, and its de-identified copy is spooled to an
    unnamed temporary file when large (``ProcessedUpload.content_file``).

    Errors from decoders are never passed through (their text can quote values from the file): an
    unexpected failure becomes a generic refusal and is logged by type only.
    """
    kind, data = _open_upload(source, context)
    try:
        if kind in (FileKind.JPEG, FileKind.PNG, FileKind.TIFF):
            assert isinstance(data, bytes)
            result = _image(data, context)
        elif kind == FileKind.DICOM:
            result = _dicom(data, context)
        else:
            assert isinstance(data, bytes)
            result = _visual_field_csv(data, context)
    except UploadRejected:
        raise
    except MemoryError:
        raise UploadRejected("The file is too large to process.", "too_large") from None
    except Exception as exc:  # see docstring
        logger.warning("Upload processing failed: %s", type(exc).__name__)
        raise UploadRejected(
            f"The file looks like {kind.value.upper()} but could not be read: it may be damaged or use a "
            "variant Visus does not support. Export it again from the device.",
            "unreadable",
        ) from None
    if result.modality not in context.trial_modalities:
        allowed = ", ".join(MODALITY_LABELS[m] for m in context.trial_modalities)
        raise UploadRejected(
            f"This is a {MODALITY_LABELS[result.modality][:-1] if result.modality != 'oct' else 'OCT'} file, but "
            f"this trial collects only {allowed}.",
            "wrong_modality",
        )
    return result


@dataclass
class _Gate:
    check: FundusCheck | None = None
    gradability: Gradability | None = None


def _fundus_gate(pixels: Any, context: UploadContext, gate: _Gate, budget: OcrBudget | None = None) -> None:
    """The upload gate on a photograph's pixels (HxWx3 uint8 array or PIL image): refuse what does not look like a
    fundus photograph unless the coordinator gave a reason, and measure gradability. OCR time counts against the
    file's ``budget``: an image that cannot be searched in time is refused (``burned_in_text_timeout``)."""
    small = gate_array(pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels))
    gate.check = assess_fundus(small)
    if not gate.check.plausible and not context.fundus_exception_reason.strip():
        image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
        if find_text(image, budget=budget):
            # A screenshot or a scanned page: no exception could store it (the burned-in text check refuses it
            # next), so none is offered.
            raise UploadRejected(
                f"This image does not look like a fundus photograph ({'; '.join(gate.check.reasons)}) and has text "
                "in it, like a screenshot or a scanned document. It cannot be stored: upload the photograph as "
                "exported by the camera.",
                "not_fundus_text",
            )
        raise UploadRejected(
            f"This image does not look like a fundus photograph: {'; '.join(gate.check.reasons)}. If it is one, "
            "store it anyway by confirming the exception with a reason.",
            NOT_FUNDUS_CODE,
        )
    gate.gradability = assess_gradability(small)


def _image(data: bytes, context: UploadContext) -> ProcessedUpload:
    gate, budget = _Gate(), OcrBudget()  # one OCR time budget for the whole file: the gate and the text check
    image = deidentify_image(
        data,
        max_pixels=context.max_pixels,
        min_side=context.min_side,
        check_pixels=lambda pixels: _fundus_gate(pixels, context, gate, budget),
        ocr_budget=budget,
    )
    return ProcessedUpload(
        modality="fundus",
        file_format=image.source_format.lower(),
        **_in_memory(image.data),
        extension=image.format.lower(),
        content_type=f"image/{image.format.lower()}",
        width=image.width,
        height=image.height,
        bits=8,
        report={
            "pipeline": "image",
            "source_format": image.source_format,
            "stripped": list(image.stripped),
            "orientation_applied": image.orientation_applied,
            "colour_converted": image.colour_converted,
            "rebuilt_from_pixels": True,
            "burned_in_text": _text_report(image.field_of_view, image.border_pixels_blanked),
        },
        preview=make_preview(image.data, PREVIEW_SIDE, max_pixels=context.max_pixels),
        thumbnail=make_thumbnail(image.data, THUMBNAIL_SIDE, max_pixels=context.max_pixels),
        fundus_check=gate.check,
        gradability=gate.gradability,
    )


def _text_report(fov: FieldOfView | None, blanked: int) -> dict[str, Any]:
    field = None if fov is None else [round(fov.centre_x), round(fov.centre_y), round(fov.radius)]
    return {"ocr": "tesseract", "field_of_view": field, "border_pixels_blanked": blanked}


def _check_eye(found: str | None, context: UploadContext, what: str) -> None:
    if found in ("OD", "OS") and found != context.eye:
        raise UploadRejected(
            f"The {what} is of the {'right' if found == 'OD' else 'left'} eye ({found}) but this case is the "
            f"{'right' if context.eye == 'OD' else 'left'} eye ({context.eye}). Upload it to the matching case.",
            "wrong_eye",
        )


def _dicom(data: Source, context: UploadContext) -> ProcessedUpload:
    options = DeidentifyOptions(
        uid_key=context.uid_key,
        subject_pseudonym=context.subject_pseudonym,
        sponsor_name="Visus trial",
        protocol_id=context.protocol_id,
        protocol_name=context.protocol_name,
        site_id=context.site_id,
        time_point_id=f"day {context.visit_day}",
        date_policy=DatePolicy.REMOVE,
        subject_age_years=context.subject_age_years,
        max_pixels=context.max_pixels,
        spool_dir=context.spool_dir,
    )
    result = deidentify_dicom(data, options=options)
    meta = result.metadata
    _check_eye(meta.laterality, context, "DICOM file")
    if meta.modality == "fundus" and meta.rows and meta.columns:
        # Photographs only: OCT B-scans are legitimately narrow (a 200 x 1024 cube scan).
        check_gradable_size(meta.columns, meta.rows, context.min_side)
    processed = ProcessedUpload(
        modality=meta.modality,
        file_format="dicom",
        content_file=result.file,
        size=result.size,
        extension="dcm",
        content_type="application/dicom",
        sop_class=meta.sop_class_name,
        width=meta.columns,
        height=meta.rows,
        frames=meta.frames or 1,
        bits=meta.bits_stored,
        report={
            "pipeline": "dicom",
            "profile": "PS3.15 Annex E Basic Application Level Confidentiality Profile on a per-IOD allow-list",
            "options": list(result.options_used),
            "actions": result.report_dicts(),
            "warnings": list(result.warnings),
        },
    )
    if meta.modality == "visual_field":
        _attach_visual_field(processed, _perimetry_before_deidentification(data, result, context), context)
    elif meta.rows and meta.columns:
        frames = processed.frames
        if meta.modality == "fundus":
            gate, budget = _Gate(), OcrBudget()  # one OCR time budget for the whole file, every frame
            shown = frame_image(result.file, frame=frames // 2, max_pixels=context.max_pixels)
            _fundus_gate(shown, context, gate, budget)
            processed.fundus_check, processed.gradability = gate.check, gate.gradability
            # The file declares BurnedInAnnotation NO (missing or YES was refused): check that it tells the truth.
            # Its pixels are kept as they are, so text anywhere in a frame refuses it, border included.
            for index in range(frames):
                shown = frame_image(result.file, frame=index, max_pixels=context.max_pixels)
                where = "although the file declares none (BurnedInAnnotation NO)"
                refuse_burned_in_text(shown, where=where, budget=budget)
            processed.report["burned_in_text"] = {"ocr": "tesseract", "frames_checked": frames}
        img = frame_image(result.file, frame=frames // 2, max_pixels=context.max_pixels)
        result.file.seek(0)
        processed.preview = image_to_jpeg(img, max_side=PREVIEW_SIDE)
        processed.thumbnail = image_to_jpeg(img, max_side=THUMBNAIL_SIDE)
    return processed


def _perimetry_before_deidentification(data: Source, result: Any, context: UploadContext) -> VisualField:
    """The field as the perimeter wrote it (GHT text and device maps included), read from the original (its header
    only); the de-identified file is what is stored. Perimetry in a secondary capture has no measurements."""
    age = context.subject_age_years if context.subject_age_years is not None else result.metadata.patient_age_years
    if result.metadata.sop_class_name != "Ophthalmic Visual Field Static Perimetry Measurements" or age is None:
        raise UploadRejected(
            "This visual-field DICOM holds no threshold sensitivities, so it cannot be analysed.",
            "visual_field_incomplete",
        )
    return visual_field_from_dicom_bytes(data, age=age)


def _attach_visual_field(processed: ProcessedUpload, vf: VisualField, context: UploadContext) -> None:
    _check_eye(vf.eye, context, "visual field")
    analysis = analyse_visual_field(vf, criteria=context.reliability)
    processed.visual_field = vf
    processed.analysis = analysis
    processed.pd_plot = render_pattern_deviation_plot(analysis, size=224)
    processed.preview = processed.pd_plot
    processed.thumbnail = processed.pd_plot


def _visual_field_csv(data: bytes, context: UploadContext) -> ProcessedUpload:
    text = data.decode("utf-8-sig")
    fields = parse_visual_field_csv(text)
    matching = [f for f in fields if f.eye == context.eye]
    if not matching:
        eyes = ", ".join(sorted({f.eye for f in fields}))
        raise UploadRejected(
            f"The CSV holds visual fields of {eyes} only, but this case is {context.eye}. Upload it to the matching "
            "case.",
            "wrong_eye",
        )
    if len(matching) > 1:
        raise UploadRejected(
            f"The CSV holds {len(matching)} visual fields of {context.eye}; a case takes one test. Split the file "
            "by visit.",
            "too_many_fields",
        )
    vf = matching[0]
    processed = ProcessedUpload(
        modality="visual_field",
        file_format="visual_field_csv",
        **_in_memory(visual_field_csv_bytes(vf)),
        extension="csv",
        content_type="text/csv",
        report={
            "pipeline": "visual_field_csv",
            "rebuilt_from_values": True,
            "rows_in_file": len(fields),
            "rows_kept": 1,
            "age_capped_at_90": vf.age > 90,
        },
    )
    _attach_visual_field(processed, vf, context)
    return processed


def visual_field_csv_bytes(vf: VisualField) -> bytes:
    """The stored CSV: rebuilt from the parsed values only (so nothing else in the file can travel)."""

    def num(value: float | None) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"

    header = [
        "eye",
        "age",
        *[f"s{i}" for i in range(1, N_POINTS + 1)],
        "md",
        "psd",
        "vfi",
        "ght",
        "fixation_losses",
        "fixation_checks",
        "false_positives",
        "false_negatives",
    ]
    maps = [name for name in DEVICE_MAPS if getattr(vf, name) is not None]  # the perimeter's own maps travel too
    for name in maps:
        header.extend(DEVICE_MAP_COLUMNS[name])
    row = [
        vf.eye,
        num(min(vf.age, 90.0)),
        *[num(v) for v in vf.sensitivities],
        num(vf.mean_deviation),
        num(vf.pattern_standard_deviation),
        num(vf.visual_field_index),
        vf.glaucoma_hemifield_test or "",
        num(vf.fixation_losses),
        num(vf.fixation_checks),
        num(vf.false_positive_percent),
        num(vf.false_negative_percent),
    ]
    for name in maps:
        row.extend(num(v) for v in getattr(vf, name))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerow(row)
    return out.getvalue().encode("utf-8")
