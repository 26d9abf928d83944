"""Private object storage helpers: random names, cleanup on failure, short-lived access."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, default_storage
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase

from platform_core.errors import ApplicationError

logger = logging.getLogger(__name__)

STORAGE_UNAVAILABLE = (
    "File storage is not available at the moment: nothing was stored. Try again in a few minutes; if it "
    "persists, tell your Visus administrator."
)


def _storage_errors() -> tuple[type[BaseException], ...]:
    """What a storage backend raises when it is down or failing (disk, S3 connection, S3 server errors)."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        errors += [BotoCoreError, ClientError]
    except ImportError:  # no S3 support installed
        pass
    return tuple(errors)


def is_s3(storage: Storage = default_storage) -> bool:
    return storage.__class__.__module__.startswith("storages.backends.s3")


def save_private(prefix: str, data: bytes | IO[bytes], extension: str, storage: Storage = default_storage) -> str:
    """Store bytes, or a seekable binary file read from its start in chunks (S3: a multipart upload), under a random
    name (names never carry anything from the upload). Returns the name."""
    name = f"{prefix.strip('/')}/{uuid.uuid4().hex}.{extension.lstrip('.')}"
    content = ContentFile(data) if isinstance(data, bytes) else File(data, name=name)
    try:
        return storage.save(name, content)
    except _storage_errors() as exc:
        # The operator's log gets the cause; the user a 503 that says nothing was stored (the caller removes
        # what an earlier step of the same upload wrote).
        logger.error("Storage unavailable while saving %s: %s", prefix, type(exc).__name__, exc_info=True)
        raise ApplicationError(STORAGE_UNAVAILABLE, code="storage_unavailable", status=503) from None


def delete_quietly(names: Iterable[str], storage: Storage = default_storage) -> None:
    """Remove objects written by a step that then failed, so nothing partial stays behind."""
    for name in names:
        if not name:
            continue
        try:
            storage.delete(name)
        except Exception:  # cleanup must not hide the original error
            logger.exception("Could not delete orphaned object %s", name)


def unlistable_reason(storage: Storage = default_storage) -> str:
    """Why ``stored_objects`` cannot list ``storage`` (neither an S3 bucket nor a folder); empty when it can."""
    if is_s3(storage):
        return ""
    try:
        storage.path("")
    except NotImplementedError:
        kind = storage.__class__  # the storage behind default_storage (a lazy proxy), not the proxy
        return (
            f"the storage {kind.__module__}.{kind.__qualname__} cannot be listed (neither an S3 bucket nor a folder "
            "on disk)"
        )
    return ""


def stored_objects(prefix: str, storage: Storage = default_storage) -> Iterator[tuple[str, datetime]]:
    """Every object under ``prefix`` (its storage name, when it was written): one paged listing on S3 (with the
    times, no request per object), a walk of the folder on disk. Nothing, with a warning in the log, on a storage
    that is neither (``unlistable_reason``)."""
    prefix = prefix.strip("/")
    reason = unlistable_reason(storage)
    if reason:
        logger.warning("Listed nothing under %s/: %s", prefix, reason)
        return
    if is_s3(storage):
        location = str(getattr(storage, "location", "") or "").strip("/")
        bucket: Any = getattr(storage, "bucket")  # noqa: B009 - django-storages' S3Storage (untyped boto3 resource)
        start = f"{location}/" if location else ""
        for item in bucket.objects.filter(Prefix=f"{start}{prefix}/"):
            yield item.key[len(start) :], item.last_modified
        return
    root, base = Path(storage.path(prefix)), Path(storage.path(""))
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.is_file():
            yield path.relative_to(base).as_posix(), datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def stored_name(file: FieldFile) -> str:
    """The storage name of a file field that must hold a file (ValueError naming the field otherwise)."""
    if not file.name:
        raise ValueError(f"{file.field.name} holds no stored file")
    return file.name


def serve_private(name: str, *, content_type: str, download_name: str | None = None) -> HttpResponseBase:
    """Hand a private object to an authorised user: a short-lived presigned URL on S3, a stream otherwise.

    Callers check permission first; this only decides how the bytes travel.
    """
    storage = default_storage
    if is_s3(storage):
        seconds = getattr(settings, "VISUS_PRESIGNED_URL_SECONDS", 300)
        url = storage.url(name, expire=seconds)  # type: ignore[call-arg]  # django-storages' S3 url() takes expire
        return HttpResponseRedirect(url)
    response = FileResponse(storage.open(name, "rb"), content_type=content_type)
    if download_name:
        response["Content-Disposition"] = f'attachment; filename="{download_name}"'
    response["Cache-Control"] = "private, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    return response
