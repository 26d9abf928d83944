"""Pure upload-processing core: no Django imports anywhere in this package, so it is unit-tested and benchmarked
alone and can run in any worker.

* ``detect`` — what a file is, from its bytes.
* ``deidentify_dicom`` (+ ``ps315_table``) — PS3.15 Basic Profile for ophthalmic DICOM objects.
* ``deidentify_image`` — JPEG/PNG/TIFF rebuilt from pixels, previews and thumbnails.
* ``visual_field`` — Humphrey 24-2 CSV/DICOM parsing, STATPAC-style indices, the PD probability plot.
* ``errors.UploadRejected`` — the one user-facing refusal, raised by all of them.
"""

from trials.uploads.errors import UploadRejected

__all__ = ["UploadRejected"]
