"""Where an uploaded file waits while its request is handled: in memory when small, otherwise in a temporary file
that has no name on disk.

Django's own ``TemporaryFileUploadHandler`` writes to a named file in ``/tmp`` that a crashed worker leaves behind
with the patient's identifiers in it. The file here is ``tempfile.TemporaryFile``: on Linux it is opened with
``O_TMPFILE`` (or unlinked at once elsewhere), so no other process can find it by name and the kernel frees it
when the request closes it or the process dies. ``FILE_UPLOAD_TEMP_DIR`` (``VISUS_UPLOAD_TEMP_DIR``) chooses the
file system; production should point it at an encrypted volume.
"""

from __future__ import annotations

import tempfile
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

__all__ = ["UnnamedTemporaryFileUploadHandler", "UnnamedTemporaryUploadedFile"]


class UnnamedTemporaryUploadedFile(UploadedFile):
    """An upload spooled to an anonymous temporary file (a real OS file, read and written in chunks)."""

    def __init__(
        self, name: str | None, content_type: str | None, size: int, charset: str | None, content_type_extra: Any = None
    ):
        file = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)
        super().__init__(file, name, content_type, size, charset, content_type_extra)


class UnnamedTemporaryFileUploadHandler(FileUploadHandler):
    """Streams every file that ``MemoryFileUploadHandler`` did not keep (over ``FILE_UPLOAD_MAX_MEMORY_SIZE``) into
    an ``UnnamedTemporaryUploadedFile``, one chunk (64 KiB) at a time.

    A request spools at most ``VISUS_MAX_UPLOAD_MB`` of files, whoever sends it: any POST's body is parsed before its
    view runs (the CSRF check reads it, signed in or not), so without a ceiling a stranger could fill the disk. A
    body that says it is larger is not spooled at all, and one that grows past the ceiling stops being read; its
    files are dropped, and the upload views answer 413 from the request's length."""

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: str | None = None
    ) -> None:
        self.ceiling = settings.VISUS_MAX_UPLOAD_MB * 1024 * 1024
        self.spooled = 0
        self.over = content_length > self.ceiling + 64 * 1024  # the multipart framing around one file

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        if getattr(self, "over", False):
            raise StopUpload(connection_reset=True)
        self.file = UnnamedTemporaryUploadedFile(self.file_name, self.content_type, 0, self.charset)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.spooled += len(raw_data)
        if self.spooled > getattr(self, "ceiling", self.spooled):
            self.file.close()  # an unnamed file: closing it frees its blocks
            raise StopUpload(connection_reset=True)
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> UploadedFile:
        self.file.seek(0)
        self.file.size = file_size
        return self.file

    def upload_interrupted(self) -> None:
        if hasattr(self, "file"):
            self.file.close()
