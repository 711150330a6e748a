"""The tus verbs as rules: who may append, how much, and what happens when an upload is complete.

A PATCH body goes to storage chunk by chunk as it arrives: memory stays flat whatever the size. The offset of
record (PostgreSQL) moves only over bytes that are stored and, with `Upload-Checksum`, verified; so a request
that fails half-way leaves an offset the client can resume from with HEAD.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

from db.models import UploadStatusName
from domain.errors import (
    ConflictError,
    DomainError,
    Gone,
    InsufficientStorage,
    Locked,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from domain.events.bus import EventBus
from domain.pagination import CursorSigner, check_page_request, render_page
from domain.uploads import queries, tus
from domain.uploads.notifier import ProgressPacer, RecordPacer, UploadNotifier
from domain.uploads.repository import Lease, Released, UploadRepository
from domain.uploads.storage import BytesElsewhere, StoreUnavailable, UploadStorage, UploadWriter
from infra.jobs import JobQueue, enqueue_upload_parse
from infra.redis import REDIS_FAILURES

logger = logging.getLogger("roi.uploads")

UPLOAD_LIST = "uploads"
"""The scope of the upload list's cursors."""


class ClientGone(DomainError):
    """The client went away (or fell silent) before its request body was complete; what arrived is kept."""

    status_code = 408


@dataclass(frozen=True)
class Created:
    upload_id: uuid.UUID
    expires_at: str | None
    """`Upload-Expires`: an upload not finished by then is removed."""


@dataclass(frozen=True)
class Appended:
    offset: int
    status: UploadStatusName
    expires_at: str | None
    """`Upload-Expires` while the upload is unfinished."""


@dataclass(frozen=True)
class StoredContent:
    length: int
    filename: str | None
    chunks: AsyncIterator[bytes]


async def _no_bytes() -> AsyncIterator[bytes]:
    return
    yield


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream with its first block already read: opening the file failed early, as a clean error."""
    yield first
    async for chunk in rest:
        yield chunk


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _storage_failure(error: OSError, offset: int) -> Exception:
    """A full disk is the server's condition, not the client's fault: 507, and the upload resumes later."""
    if isinstance(error, BytesElsewhere):
        return Unavailable(f"this host cannot append at {offset}: {error}{error.hint}")
    if error.errno in NO_SPACE:
        return InsufficientStorage("no room to store this upload now; nothing was kept, retry later")
    if isinstance(error, StoreUnavailable):
        return Unavailable(f"UPLOAD_STORE failed: {error}; nothing past the offset was kept, retry later")
    return error


async def _discard(writer: UploadWriter) -> None:
    """Best effort: what is left past the offset of record is cut by the next writer or deleted with the upload."""
    try:
        await writer.discard()
    except OSError:
        logger.warning("could not discard the bytes of a failed append; the next append cuts them", exc_info=True)


class _LeaseLost(Exception):
    def __init__(self, reason: DomainError) -> None:
        self.reason = reason


class UploadService:
    def __init__(
        self,
        repository: UploadRepository,
        storage: UploadStorage,
        events: EventBus,
        queue: JobQueue,
        max_size: int,
        idle_timeout_s: float,
        cursors: CursorSigner,
    ) -> None:
        self.repository = repository
        self.cursors = cursors
        self.storage = storage
        self.events = events
        self.queue = queue
        self.max_size = max_size
        self.idle_timeout_s = idle_timeout_s

    async def create(self, owner_id: uuid.UUID, length: int, metadata_header: str | None) -> Created:
        """`length` is bounded by `max_size` already (`tus.upload_length`)."""
        metadata = tus.parse_metadata(metadata_header)
        upload_id, expires_at = await self.repository.create(
            owner_id,
            length,
            filename=tus.display_name(metadata.get("filename")),
            filetype=tus.display_name(metadata.get("filetype")),
            tus_metadata=metadata_header or None,
        )
        notifier = UploadNotifier(self.events, upload_id, owner_id)
        if length:
            await notifier.status("uploading", offset=0, size=length)
        else:
            await notifier.status("processing", offset=0, size=0)
            await self._enqueue_parse(upload_id)
        return Created(upload_id, tus.http_date(expires_at) if expires_at else None)

    async def append(
        self,
        upload_id: uuid.UUID,
        owner_id: uuid.UUID,
        offset: int,
        content_length: int | None,
        checksum: tus.Checksum | None,
        body: AsyncIterator[bytes],
    ) -> Appended:
        """Stream `body` onto the upload at `offset`; raises ClientGone after recording what was stored."""
        lease = await self.repository.acquire(upload_id, owner_id, offset)
        remaining = lease.length - offset
        if content_length is not None and content_length > remaining:
            await self.repository.release(lease, offset)
            raise PayloadTooLarge(
                f"Content-Length: {content_length} bytes would pass Upload-Length by {content_length - remaining}"
            )
        notifier = UploadNotifier(self.events, upload_id, owner_id)
        hasher = checksum.hasher() if checksum else None
        pacer, recording = ProgressPacer(offset, lease.length), RecordPacer()
        received = 0
        try:
            writer = await self.storage.writer(upload_id, offset)
        except OSError as error:
            await self.repository.release(lease, offset)
            raise _storage_failure(error, offset) from error
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout_s):
                        chunk = await anext(body, None)
                except TimeoutError:
                    raise ClientGone(f"no bytes for {self.idle_timeout_s:g} s") from None
                if chunk is None:
                    break
                if received + len(chunk) > remaining:
                    raise PayloadTooLarge(f"the body passes Upload-Length ({lease.length} bytes)")
                await writer.write(chunk)
                received += len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                if recording.due():
                    # Unverified bytes (a checksum is pending) are not recorded, but the lease is kept all the same:
                    # lapsed, it would let another request append at this offset while this one still writes there.
                    recorded = offset if hasher is not None else offset + received
                    if recorded > offset:
                        await writer.sync()
                    if not await self.repository.renew(lease, recorded):
                        raise _LeaseLost(await self._lease_lost(lease))
                if pacer.due(offset + received):
                    notifier.progress_soon(offset + received, lease.length)
        except _LeaseLost as lost:
            await writer.close()  # what it wrote past the offset of record is the next writer's to cut
            raise lost.reason from None
        except ClientGone:
            kept = offset if hasher is not None else offset + received  # an unverifiable chunk is discarded
            try:
                if kept > offset:
                    await writer.sync()
            except OSError:
                kept = offset
            try:
                if kept == offset:
                    await _discard(writer)
            finally:
                await writer.close()
            await self._release(lease, kept, notifier)
            raise
        except BaseException as error:
            try:
                await _discard(writer)
            finally:
                await writer.close()
            await self._release(lease, offset, notifier)
            if isinstance(error, OSError):
                raise _storage_failure(error, offset) from error
            raise
        if hasher is not None and checksum is not None and hasher.digest() != checksum.digest:
            try:
                await _discard(writer)
            finally:
                await writer.close()
            await self._release(lease, offset, notifier)
            raise tus.ChecksumMismatch(f"Upload-Checksum: the {checksum.algorithm} of the body does not match")
        try:
            await writer.sync()
        except OSError as error:
            await self._release(lease, offset, notifier)
            raise _storage_failure(error, offset) from error
        finally:
            await writer.close()
        released = await self._release(lease, offset + received, notifier)
        expires = tus.http_date(released.expires_at) if released.expires_at else None
        return Appended(released.offset, released.status, expires)

    async def _release(self, lease: Lease, offset: int, notifier: UploadNotifier) -> Released:
        released = await self.repository.release(lease, offset)
        await notifier.settle()  # progress still being told goes before what the release tells
        if released is None:
            raise await self._lease_lost(lease)
        events = [notifier.progress_event(released.offset, lease.length)] if released.offset != lease.offset else []
        if released.status == "processing":
            events += notifier.status_events("processing", offset=released.offset, size=lease.length)
        await notifier.publish(events)
        if released.status == "processing":
            await self._enqueue_parse(lease.upload_id)
        return released

    async def _lease_lost(self, lease: Lease) -> DomainError:
        """Why a request's lease is gone: the upload was deleted (what it stored is dropped), or the request stalled
        past its lease and another one appends now (whose bytes are left alone: same offset, same storage)."""
        try:
            await self.repository.head(lease.upload_id, lease.owner_id)
        except NotFound:
            await self.storage.delete(lease.upload_id)
            return NotFound("no upload with this id")
        return Locked("this request stalled past its lease and another request appends now; HEAD for the offset")

    async def _enqueue_parse(self, upload_id: uuid.UUID) -> None:
        try:
            await enqueue_upload_parse(self.queue, str(upload_id))
        except REDIS_FAILURES:
            logger.warning("parse of upload %s not queued yet: Redis does not answer; the reconciler will", upload_id)

    async def detail_json(self, upload_id: uuid.UUID, owner_id: uuid.UUID) -> bytes:
        body: bytes | None = await self.repository.pool.fetchval(queries.UPLOAD_DETAIL, upload_id, owner_id)
        if body is None:
            raise NotFound("no upload with this id")
        return body

    async def page_json(self, owner_id: uuid.UUID, limit: int, offset: int, cursor: str | None) -> bytes:
        """A page newest first, from `offset` or after `cursor` (a `next_cursor` of this owner's list)."""
        check_page_request(offset, cursor)
        if cursor is None:
            rows = await self.repository.pool.fetch(queries.UPLOAD_PAGE, owner_id, limit + 1, offset)
        else:
            after = self.cursors.decode(owner_id, UPLOAD_LIST, cursor)
            rows = await self.repository.pool.fetch(queries.UPLOAD_PAGE_AFTER, owner_id, limit + 1, 0, *after)
        assert rows, "a page statement answers a row past the end too"
        return render_page(rows, limit, offset, partial(self.cursors.encode, owner_id, UPLOAD_LIST))

    async def content(self, upload_id: uuid.UUID, owner_id: uuid.UUID) -> StoredContent:
        """A complete upload's bytes as stored, for the owner to check: 409 while bytes are still missing."""
        head = await self.repository.head(upload_id, owner_id)
        if head.offset < head.length:
            raise ConflictError(f"the upload is not complete: {head.offset} of {head.length} bytes stored")
        if not head.length:
            return StoredContent(0, head.filename, _no_bytes())
        try:
            chunks = self.storage.chunks(upload_id, head.length)
            first = await anext(chunks)
        except FileNotFoundError as error:
            raise Gone("the upload's bytes are no longer stored") from error
        except StoreUnavailable as error:
            raise Unavailable(f"UPLOAD_STORE failed: {error}; retry later") from error
        return StoredContent(head.length, head.filename, _prepend(first, chunks))

    async def terminate(self, upload_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        """The bytes first, then the row: a store that fails leaves the upload as it was (503, delete again later)
        rather than objects no row leads to. Deleted once more after the row, for an append that ended meanwhile."""
        with contextlib.suppress(Gone):  # an expired upload is deleted all the same
            await self.repository.head(upload_id, owner_id)  # 404 for another user's: nothing of theirs is touched
        try:
            await self.storage.delete(upload_id)
        except StoreUnavailable as error:
            raise Unavailable(f"UPLOAD_STORE failed: {error}; nothing was deleted, retry later") from error
        await self.repository.delete(upload_id, owner_id)
        try:
            await self.storage.delete(upload_id)
        except OSError:
            logger.warning("the bytes of deleted upload %s are kept: the store failed", upload_id, exc_info=True)
