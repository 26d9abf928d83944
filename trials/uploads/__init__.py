"""Pure upload-processing core: no Django imports anywhere in this package, so it is unit-tested and benchmarked
alone and can run in any worker.

* ``detect`` — what a file is, from its bytes.
* ``pipeline`` — one pipeline for every way a file comes in: detect, de-identify, validate, previews.
* ``deidentify_dicom`` — the DICOM entry point, built from ``dicom_dataset`` (reading, header checks),
  ``dicom_elements`` (element actions, + ``ps315_table``), ``dicom_pixels`` (compressed-frame parsers) and
  ``dicom_leaks`` (the leak check). ``dicom_frames`` decodes one frame for previews and inference.
* ``deidentify_image`` — JPEG/PNG/TIFF rebuilt from pixels, previews and thumbnails.
* ``visual_field`` — Humphrey 24-2 CSV/DICOM parsing, STATPAC-style indices, the PD probability plot.
* ``errors.UploadRejected`` — the one user-facing refusal, raised by all of them.
"""

from trials.uploads.errors import UploadRejected

__all__ = ["UploadRejected"]
