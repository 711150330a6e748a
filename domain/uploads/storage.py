"""Where upload bytes live, behind a small interface: a local directory now, an object store when there are hosts.

The offset of record is in PostgreSQL, never in storage: a writer always starts by cutting the stored bytes back
to that offset, so bytes written past it by a request that failed (a checksum mismatch, a lost connection, a killed
process) are dropped before anything is appended. The other way round, the offset of record never passes bytes that
are not durable: a writer is synced before the offset moves over what it wrote, so not even a machine that loses
power can leave PostgreSQL promising bytes the disk does not have.

Several hosts share a bucket instead (`s3_storage`): the same interface, with the same two rules.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

READ_BLOCK_BYTES = 1 << 20


class BytesElsewhere(OSError):
    """This host cannot reach the upload's bytes before the offset of record (another host received them).

    An OSError like every failure of the store: a writer may find it out at its first write, not only when opened."""

    hint = ""
    """What the operator can do about it, for the error the client reads."""


class OnAnotherHost(BytesElsewhere):
    hint = (
        ", and UPLOAD_STORE=file keeps an upload's bytes on the host that received them. Send the upload's requests"
        " to one host, or give every host one shared UPLOAD_STORE (s3://bucket)"
    )


class StoreUnavailable(OSError):
    """The shared store failed or did not answer: nothing of the request is acknowledged, the client retries."""


class UploadWriter(Protocol):
    async def write(self, chunk: bytes) -> None: ...

    async def sync(self) -> None:
        """Make everything written so far durable; called before the offset of record moves over it."""
        ...

    async def discard(self) -> None:
        """Drop everything this writer wrote (a checksum that did not match, a body that failed)."""
        ...

    async def close(self) -> None: ...


class UploadStorage(Protocol):
    async def writer(self, upload_id: uuid.UUID, offset: int) -> UploadWriter:
        """A writer appending at `offset`, the stored bytes cut back to it first; `BytesElsewhere` when fewer than
        `offset` bytes are stored here, so that nothing is ever written after a hole: raised here, or by the
        writer's first `write` or `sync` at the latest, before it stores anything."""
        ...

    def reader(self, upload_id: uuid.UUID, length: int | None = None) -> BinaryIO:
        """The first `length` stored bytes (all of them, if None) as a (blocking) file object, for the parser's
        thread; FileNotFoundError when none or fewer are stored (a parse of a cut file could succeed on wrong
        figures)."""
        ...

    def chunks(self, upload_id: uuid.UUID, length: int) -> AsyncIterator[bytes]:
        """The first `length` stored bytes, a block at a time, without blocking the loop; FileNotFoundError if none."""
        ...

    async def delete(self, upload_id: uuid.UUID) -> None: ...


class LocalFileWriter:
    """Writes go to the page cache: microseconds per chunk, so they are made on the loop rather than in threads.
    Syncing waits for the disk, so it runs in a thread; a new file's directory entry is synced with it once."""

    def __init__(self, fd: int, start: int, new_in: Path | None = None) -> None:
        self.fd = fd
        self.start = start
        self._new_in = new_in
        self._unsynced = False

    async def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view) :]
        self._unsynced = True

    async def sync(self) -> None:
        if self._unsynced or self._new_in is not None:
            await asyncio.to_thread(self._sync)

    def _sync(self) -> None:
        os.fdatasync(self.fd)
        self._unsynced = False
        if self._new_in is not None:
            directory = os.open(self._new_in, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._new_in = None

    async def discard(self) -> None:
        os.ftruncate(self.fd, self.start)

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
        path = self.path(upload_id)
        try:
            fd, created = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            fd, created = os.open(path, os.O_WRONLY), False
        try:
            stored = os.fstat(fd).st_size
            if stored < offset:
                raise OnAnotherHost(f"{stored} of the upload's first {offset} bytes are stored on this host")
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            if created:
                path.unlink(missing_ok=True)
            raise
        return LocalFileWriter(fd, offset, new_in=self.directory if created else None)

    def reader(self, upload_id: uuid.UUID, length: int | None = None) -> BinaryIO:
        stored = self.path(upload_id).open("rb")
        size = os.fstat(stored.fileno()).st_size
        if length is not None and size < length:
            stored.close()
            raise FileNotFoundError(f"upload {upload_id}: {length - size} of its {length} bytes are not stored")
        return stored

    async def chunks(self, upload_id: uuid.UUID, length: int) -> AsyncIterator[bytes]:
        stored = await asyncio.to_thread(self.path(upload_id).open, "rb")
        try:
            remaining = length
            while remaining > 0:
                block = await asyncio.to_thread(stored.read, min(READ_BLOCK_BYTES, remaining))
                if not block:
                    raise OSError(f"the stored upload ends {remaining} bytes short")
                remaining -= len(block)
                yield block
        finally:
            stored.close()

    async def delete(self, upload_id: uuid.UUID) -> None:
        self.path(upload_id).unlink(missing_ok=True)


def local_storage(data_dir: Path) -> LocalStorage:
    return LocalStorage(data_dir / "uploads")
