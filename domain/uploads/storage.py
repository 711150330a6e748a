"""Where upload bytes live, behind a small interface: a local directory now, an object store when there are hosts.

The offset of record is in PostgreSQL, never in storage: a writer always starts by cutting the stored bytes back
to that offset, so bytes written past it by a request that failed (a checksum mismatch, a lost connection, a killed
process) are dropped before anything is appended.

Several hosts would need a shared store: an S3-compatible bucket through `obstore` (async, streaming multipart
uploads: one part per chunk, completed when the upload is) would implement the same three methods.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol


class UploadWriter(Protocol):
    async def write(self, chunk: bytes) -> None: ...

    async def close(self) -> None: ...


class UploadStorage(Protocol):
    async def writer(self, upload_id: uuid.UUID, offset: int) -> UploadWriter:
        """A writer appending at `offset`, the stored bytes cut back to it first."""
        ...

    def reader(self, upload_id: uuid.UUID) -> BinaryIO:
        """The stored bytes as a (blocking) file object, for the parser's thread; FileNotFoundError if none."""
        ...

    async def delete(self, upload_id: uuid.UUID) -> None: ...


class LocalFileWriter:
    """Writes go to the page cache: microseconds per chunk, so they are made on the loop rather than in threads."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view) :]

    async def close(self) -> None:
        os.close(self.fd)


class LocalStorage:
    """One file per upload, named by its id alone: nothing the client sends (filenames, metadata) reaches a path."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id: uuid.UUID) -> Path:
        return self.directory / uuid.UUID(str(upload_id)).hex

    async def writer(self, upload_id: uuid.UUID, offset: int) -> LocalFileWriter:
        fd = os.open(self.path(upload_id), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError:
            os.close(fd)
            raise
        return LocalFileWriter(fd)

    def reader(self, upload_id: uuid.UUID) -> BinaryIO:
        return self.path(upload_id).open("rb")

    async def delete(self, upload_id: uuid.UUID) -> None:
        self.path(upload_id).unlink(missing_ok=True)


def local_storage(data_dir: Path) -> LocalStorage:
    return LocalStorage(data_dir / "uploads")
