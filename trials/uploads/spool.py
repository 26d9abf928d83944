"""Files instead of bytes for large uploads: the upload pipeline reads its input and writes its output through
seekable binary files, so a 255 MB DICOM volume is never held in memory whole (tests/benchmarks/
bench_upload_memory.py). Small outputs stay in memory; large ones roll over to an unnamed temporary file."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Final

__all__ = ["CHUNK", "Source", "Window", "as_file", "chunks", "file_size", "sha256_of", "spooled"]

CHUNK: Final = 1024 * 1024  # bytes read or written at a time
IN_MEMORY: Final = 4 * 1024 * 1024  # outputs up to this size never touch a disk

Source = bytes | IO[bytes]


def as_file(source: Source) -> IO[bytes]:
    """A seekable binary file at its start: a view of the bytes (no copy), or the file behind a proxy without a name.

    Without a name because pydicom re-opens a file by its ``name`` to read a deferred value: an upload's name is
    the client's file name (a path on this server is the last thing to open), a temporary file's is its descriptor.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    source.seek(0)
    return _Unnamed(source)  # type: ignore[return-value]


class _Unnamed:
    """Every attribute of the wrapped file but its name."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle

    def __getattr__(self, attribute: str) -> object:
        if attribute in ("name", "filename"):
            raise AttributeError(attribute)
        return getattr(self._handle, attribute)


def file_size(handle: IO[bytes]) -> int:
    here = handle.tell()
    size = handle.seek(0, os.SEEK_END)
    handle.seek(here)
    return size


def spooled(directory: str | None = None) -> IO[bytes]:
    """A binary file in memory up to ``IN_MEMORY`` bytes, then an unnamed temporary file (gone when closed)."""
    return tempfile.SpooledTemporaryFile(max_size=IN_MEMORY, mode="w+b", dir=directory)


def chunks(handle: IO[bytes], start: int, length: int, size: int = CHUNK) -> Iterator[bytes]:
    """``length`` bytes of ``handle`` from ``start``, ``size`` at a time (ends early at the end of the file)."""
    handle.seek(start)
    left = length
    while left > 0:
        block = handle.read(min(size, left))
        if not block:
            return
        left -= len(block)
        yield block


def sha256_of(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in chunks(handle, 0, file_size(handle)):
        digest.update(block)
    handle.seek(0)
    return digest.hexdigest()


class _WindowRaw(io.RawIOBase):
    def __init__(
        self,
        handle: IO[bytes],
        start: int,
        length: int,
        pad: bool,
        transform: Callable[[bytes], bytes] | None,
        unit: int,
    ) -> None:
        self._handle, self._start, self._length, self._pad = handle, start, length, pad
        self._transform, self._unit = transform, unit
        self._size = length + (1 if pad else 0)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        got = b""
        if self._pos < self._length:
            end = min(self._pos + want, self._length)
            # Whole units (samples) around the bytes asked for, so the transform sees aligned samples.
            low = self._pos - self._pos % self._unit
            high = min(self._length, -(-end // self._unit) * self._unit)
            self._handle.seek(self._start + low)
            block = self._handle.read(high - low)
            if self._transform is not None:
                block = self._transform(block)
            got = block[self._pos - low : end - low]
            if not got:
                return 0
        count = len(got)
        buffer[:count] = got
        if count < want and self._pos + count == self._length:  # the pad byte after the last byte of the value
            buffer[count] = 0
            count += 1
        self._pos += count
        return count


def Window(
    handle: IO[bytes],
    start: int,
    length: int,
    *,
    pad: bool = False,
    transform: Callable[[bytes], bytes] | None = None,
    unit: int = 1,
) -> io.BufferedReader:
    """A read-only buffered view of ``length`` bytes of ``handle`` from ``start`` (one zero byte appended with
    ``pad``): what pydicom writes as a buffered element value, in chunks, without reading it into memory.
    ``transform`` rewrites each block read (whole ``unit``-byte samples, but for a short tail) into as many bytes."""
    return io.BufferedReader(_WindowRaw(handle, start, length, pad, transform, unit), buffer_size=CHUNK)
