"""The reader workstation's part of the reading page (issue 11, items 3, 4 and 7): the data the page's JS works
from (static/js/reading-viewer.js and reading.js, passed with json_script), the reading form as the keyboard
drives it, the visual-field printouts, the AI-aided panel and the viewer's image variants.

What the reader may see is decided in ``reading.selectors`` (``read_case_view``, ``read_ai_outputs``: AI outputs
only inside their own AI-aided read, once the unaided read of the case is signed); this module only lays it out.
"""

from __future__ import annotations

import io
from typing import Any

from django.core.files.storage import default_storage
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.templatetags.static import static
from django.urls import reverse

from platform_core.storage import serve_private
from reading import imaging, selectors
from reading.forms import ReadForm
from reading.models import MarkKind, Read
from reading.vf_printout import vf_printout

# The viewer's variants of a photograph (URL name: imaging variant): as stored, red-free (green channel), CLAHE.
VIEWER_VARIANTS = {"full": "original", "redfree": "redfree", "clahe": "clahe"}
BROWSER_FORMATS = {"jpeg": "image/jpeg", "png": "image/png"}  # stored formats a browser shows as they are
DECODABLE_FORMATS = {"jpeg", "png", "tiff"}  # decoded as they are; DICOM through its frame decoder


def read_page_context(read: Read, form: ReadForm) -> dict[str, Any]:
    """The reading page's case, images, printouts, questions and (AI-aided phase only) AI outputs."""
    view = selectors.read_case_view(read)
    ai_outputs = selectors.read_ai_outputs(read)
    return {
        "view": view,
        "ai_outputs": ai_outputs,
        "ai_rows": _ai_rows(ai_outputs),
        "glaucoma_evidence": selectors.read_glaucoma_evidence(read, ai_outputs),
        "questions": _question_rows(form),
        "printouts": [vf_printout(vf) for vf in view["visual_fields"]],
        "workstation": _workstation(read, view["files"], ai_outputs),
        "mark_kinds": MarkKind.choices,
    }


def viewable(case_file: object) -> bool:
    """Photographs (fundus, OCT images) open in the deep-zoom viewer; a visual field is shown as a printout."""
    return bool(getattr(case_file, "preview", None)) and not hasattr(case_file, "visual_field")


def _workstation(read: Read, files: list, ai_outputs: list) -> dict:
    """What static/js/reading-viewer.js and reading.js need, passed with json_script: the images at full
    resolution and their variants, the reader's marks (image pixels), the draft and mark API addresses and,
    in the AI-aided phase only, the AI heatmaps (``ai_outputs`` comes from ``selectors.read_ai_outputs``)."""
    overlays = [
        {
            "url": reverse("reading:read-overlay", args=[read.pk, p.pk]),
            "label": str(p.model_version),
            "regions": _zoomed_regions(p),
        }
        for p in ai_outputs
        if p.attention_overlay
    ]
    images: list[dict] = []
    for f in files:
        if not viewable(f):
            continue
        images.append(
            {
                "id": str(f.pk),
                "label": f"{f.get_modality_display()} {len(images) + 1}",
                "modality": f.modality,
                "markable": f.modality == "fundus",
                "width": f.width,
                "height": f.height,
                "variants": {v: reverse("reading:read-file", args=[read.pk, f.pk, v]) for v in VIEWER_VARIANTS},
                # The heatmaps are of the case's photograph; they are laid over its first fundus image.
                "overlays": overlays if f.modality == "fundus" and not any(i["overlays"] for i in images) else [],
            }
        )
    return {
        "read": str(read.pk),
        "signed": read.is_signed,
        "images": images,
        "marks": [
            {
                "id": str(m.pk),
                "case_file": str(m.case_file_id),
                "kind": m.kind,
                "shape": m.shape,
                "x": m.x,
                "y": m.y,
                "width": m.width,
                "height": m.height,
            }
            for m in read.marks.all()
        ],
        "kinds": [{"value": k, "label": label} for k, label in MarkKind.choices],
        "draft_url": reverse("api:reading:read-draft", args=[read.pk]),
        "marks_url": reverse("api:reading:mark-add", args=[read.pk]),
        "mark_url": reverse("api:reading:mark-change", args=["00000000-0000-0000-0000-000000000000"]),
        "osd_images": static("vendor/openseadragon/images/"),
    }


def _zoomed_regions(prediction: object) -> list[list[float]]:
    """The regions the network zoomed into (``crop_boxes``, in the photograph's pixels), as x, y, width, height in
    the viewer's coordinates (the photograph's width is 1)."""
    size = (getattr(prediction, "details", None) or {}).get("image_size") or []
    width = float(size[0]) if size and size[0] else 0.0
    if not width:
        return []
    regions = []
    for box in getattr(prediction, "crop_boxes", None) or []:
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 > x0 and y1 > y0:
            regions.append([x0 / width, y0 / width, (x1 - x0) / width, (y1 - y0) / width])
    return regions


def _question_rows(form: ReadForm) -> list[dict]:
    """The reading form as the keyboard drives it: per question its field, its confidence field and its keys."""
    rows = []
    for key in form.questions:
        field = form[f"q_{key}"]
        choices = [c for c in getattr(field.field, "choices", []) if c[0] != ""]
        if choices and all(str(value).isdigit() for value, _ in choices):
            keys = [(str(value), label) for value, label in choices]  # a grade: its own digit
        else:
            keys = [(str(n), label) for n, (_, label) in enumerate(choices, start=1)]
        rows.append(
            {
                "key": key,
                "field": field,
                "confidence": form[f"c_{key}"] if key in form.diagnostic else None,
                "keys": keys,
                "kind": "choice" if choices else "integer",
            }
        )
    return rows


def _ai_rows(ai_outputs: list) -> list[dict]:
    """The AI outputs of the reader's own AI-aided read, for display: grade probabilities as percentages."""
    return [
        {
            "prediction": p,
            "grades": [
                {"grade": grade, "percent": round(100 * float(prob), 1)}
                for grade, prob in enumerate(p.class_probabilities or [])
            ],
        }
        for p in ai_outputs
    ]


def _dicom_png(name: str) -> bytes:
    """A DICOM photograph's first frame as PNG (the decoding the previews and the models use)."""
    from django.conf import settings

    from trials.uploads.deidentify_dicom import frame_image

    with default_storage.open(name, "rb") as handle:
        image = frame_image(handle.read(), max_pixels=settings.VISUS_MAX_IMAGE_PIXELS)
    buffer = io.BytesIO()
    image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buffer, "PNG")
    return buffer.getvalue()


def viewer_image(case_file: Any, variant: str) -> HttpResponseBase:
    """A photograph for the deep-zoom viewer at full resolution: as stored when the browser shows that format,
    otherwise decoded (TIFF, and DICOM from its own pixels); red-free and CLAHE computed from the same pixels."""
    if not viewable(case_file):
        raise Http404("Only photographs open in the viewer.")
    fmt = case_file.file_format
    kind = VIEWER_VARIANTS[variant]
    if kind == "original" and fmt in BROWSER_FORMATS:
        return serve_private(case_file.content.name, content_type=BROWSER_FORMATS[fmt])
    if fmt == "dicom":  # the stored (de-identified) DICOM's own pixels, at full resolution
        data = _dicom_png(case_file.content.name)
    else:
        source = case_file.content.name if fmt in DECODABLE_FORMATS else case_file.preview.name
        with default_storage.open(source, "rb") as handle:
            data = handle.read()
    response = HttpResponse(imaging.render_variant(data, kind), content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    return response
