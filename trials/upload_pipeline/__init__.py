"""Old name of ``trials.uploads.pipeline`` (the pure upload pipeline moved into the pure package), kept so imports
written against it still work. A package rather than a module so that git sees ``trials/upload_pipeline.py`` as
renamed to ``trials/uploads/pipeline.py`` and merges edits made under the old name onto the new file."""

from trials.uploads.pipeline import (
    MODALITY_LABELS,
    PREVIEW_SIDE,
    THUMBNAIL_SIDE,
    ProcessedUpload,
    UploadContext,
    process_upload,
    visual_field_csv_bytes,
)

__all__ = [
    "MODALITY_LABELS",
    "PREVIEW_SIDE",
    "THUMBNAIL_SIDE",
    "ProcessedUpload",
    "UploadContext",
    "process_upload",
    "visual_field_csv_bytes",
]
