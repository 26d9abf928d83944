"""The one exception the upload core raises for files a user must fix or replace."""

from __future__ import annotations


class UploadRejected(Exception):
    """A user-facing refusal of an uploaded file.

    ``message`` is shown to the uploader as is, so it never contains values read from the file (names, IDs,
    dates, free text): only what the file is, what is wrong with it and what to upload instead. ``code`` is a
    stable machine-readable reason for the API, the audit trail and the tests.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"UploadRejected(code={self.code!r}, message={self.message!r})"


PDF_REFUSAL = (
    "PDF printouts are not accepted: perimeter and camera printouts carry the patient's name, date of birth and "
    "other identifiers inside their text and images, which cannot be removed reliably. Upload the perimeter's "
    "DICOM export (Ophthalmic Visual Field Static Perimetry Measurements) or the documented visual-field CSV "
    "(see VISUAL_FIELD_CSV.md) instead."
)
