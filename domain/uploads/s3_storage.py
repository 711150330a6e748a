"""Upload bytes in an S3-compatible bucket, shared by every API host: an upload is an ordered chain of objects.

Each upload lives under `PREFIX/<upload id>/` as segments named by the offset they start at (zero-padded, so that
names sort as offsets): `…/00000000000000000000`, `…/00000000000005242880`, … A segment is one single-request `PUT`
of what a PATCH buffered: put when the PATCH ends, when the service records its offset mid-request, or once the
buffer reaches `SEGMENT_BYTES`; so an object exists whole or not at all, and the offset of record (PostgreSQL) only
ever moves to the end of a segment. Reading walks the chain from offset 0, each segment starting where the previous
one ended: a hole cannot be read past, and a writer refuses to start unless the chain reaches exactly the offset of
record. Segments past the offset of record (a request that failed after putting them) are deleted before anything is
appended, as the file store truncates.

Why segments rather than one multipart upload, as tusd's S3 store does (pkg/s3store: a multipart upload created
with the upload, each PATCH spooled to temporary files and sent as parts of at least 5 MiB, a smaller remainder kept
as an "incomplete part" object that the next PATCH downloads, deletes and prepends, the offset derived from
ListParts, the multipart upload aborted on termination): that needs the multipart id kept across requests and
hosts, a ListParts per request, and abandoned multipart uploads aborted, their parts invisible until then. A chain of
plain objects needs none of that: there is no multipart state for a crashed host to abandon (deleting the prefix
removes everything), chunks of any size work, and every host sees the same bytes, so a PATCH may go to any of them.
The cost, a few more objects to read back, is a `GET` per segment, streamed. Measured on SeaweedFS on this machine
(10 MiB): two 5 MiB `PUT`s 0.10-0.12 s, one multipart upload in 5 MiB parts 0.09-0.11 s; so nothing is lost by not
using multipart, and the client can be `obstore` (Rust, async, streaming, with synchronous calls for the parser's
thread) rather than aiobotocore, whose multipart calls this design does not need.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime
import io
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from domain.uploads.storage import READ_BLOCK_BYTES, BytesElsewhere, StoreUnavailable

if TYPE_CHECKING:
    from obstore import Attributes, BytesStream, GetOptions
    from obstore.store import RetryConfig

SEGMENT_BYTES = 8 << 20
"""A writer puts its buffer as a segment once it holds this much: the memory one PATCH holds (twice that while the
buffer is joined for the PUT), whatever the upload's size. A 1 GiB PATCH kept an API process within 176 MiB RSS."""

SEGMENT_ATTRIBUTES: Attributes = {"Content-Type": "binary/octet-stream"}
"""A segment is opaque bytes, and says so: a store left to guess may transform them. SeaweedFS gzips what it sniffs
as text (a CSV ledger) on the way in; it sniffs `application/octet-stream` too, but not `binary/octet-stream`, the
type S3 itself gives an object stored without one. Server CPU to store a 5 MiB CSV segment (SeaweedFS 4.48 here):
100 ms untyped, 79 as application/octet-stream, 54 as binary/octet-stream (random bytes: 47)."""
OFFSET_DIGITS = 20
BUCKET_RETRY_S = 10
"""How long a request to the bucket is retried (the client's default, 3 minutes, would hold a PATCH that long)."""


def parse_store_url(url: str) -> tuple[str, str]:
    """`s3://BUCKET[/PREFIX]` as (bucket, prefix)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def open_bucket(url: str) -> S3Store:
    """The bucket, configured from the standard AWS_* variables (endpoint, keys, region, AWS_ALLOW_HTTP)."""
    bucket, prefix = parse_store_url(url)
    retry: RetryConfig = {"max_retries": 3, "retry_timeout": datetime.timedelta(seconds=BUCKET_RETRY_S)}
    return S3Store(bucket, prefix=prefix or None, virtual_hosted_style_request=False, retry_config=retry)


@contextlib.contextmanager
def bucket_errors() -> Iterator[None]:
    """The client's errors as the OSError the service handles for every store (a missing object stays one)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except BaseError as error:
        raise StoreUnavailable(str(error).splitlines()[0][:300]) from error


def segment_key(upload_id: uuid.UUID, start: int) -> str:
    return f"{uuid.UUID(str(upload_id)).hex}/{start:0{OFFSET_DIGITS}d}"


def _chain(objects: Sequence[tuple[int, int, str]], length: int | None = None) -> tuple[list[tuple[str, int]], int]:
    """The segments that follow each other from offset 0 (up to `length`, if given), and the offset they reach."""
    by_start = {start: (key, size) for start, size, key in objects}
    chain: list[tuple[str, int]] = []
    reached = 0
    while (length is None or reached < length) and reached in by_start:
        key, size = by_start[reached]
        if size == 0:
            break
        chain.append((key, size))
        reached += size
    return chain, reached


def _segments(metas: Sequence[obstore.ObjectMeta]) -> list[tuple[int, int, str]]:
    found = []
    for meta in metas:
        name = meta["path"].rsplit("/", 1)[-1]
        if len(name) == OFFSET_DIGITS and name.isdigit():
            found.append((int(name), int(meta["size"]), meta["path"]))
    return found


class S3Writer:
    """Buffers up to SEGMENT_BYTES, then puts them as one object named by the offset they start at.

    `checked` is the storage's look at the chain (a LIST, and any stale segments deleted): it runs while the body
    arrives, and the first put waits for it, so that nothing is stored unless the chain reaches the offset exactly.
    """

    def __init__(self, store: S3Store, upload_id: uuid.UUID, offset: int, checked: asyncio.Future[None]) -> None:
        self.store = store
        self.upload_id = upload_id
        self.start = offset
        self._next = offset
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._put: list[str] = []
        self._checked: asyncio.Future[None] | None = checked

    async def write(self, chunk: bytes) -> None:
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= SEGMENT_BYTES:
            await self.sync()

    async def sync(self) -> None:
        if not self._buffered:
            return
        if self._checked is not None:
            # Shielded: a cancelled request leaves the check to finish, and close() waits for it. Kept until it
            # succeeds, so that every later sync fails as the first did.
            await asyncio.shield(self._checked)
            self._checked = None
        key = segment_key(self.upload_id, self._next)
        body, self._buffer = b"".join(self._buffer), []
        with bucket_errors():
            await obstore.put_async(self.store, key, body, use_multipart=False, attributes=SEGMENT_ATTRIBUTES)
        self._put.append(key)
        self._next += self._buffered
        self._buffered = 0

    async def discard(self) -> None:
        """Drop what this writer stored: the offset of record stays where the writer started."""
        self._buffer, self._buffered = [], 0
        if self._put:
            with bucket_errors():
                await obstore.delete_async(self.store, self._put)
            self._put = []

    async def close(self) -> None:
        self._buffer, self._buffered = [], 0  # never put: not acknowledged, so simply dropped
        if self._checked is not None:
            # Waited for, not cancelled: a DELETE of stale segments already sent must land before the lease is
            # given back, or it could remove what the next writer puts under the same name.
            checked, self._checked = self._checked, None
            await asyncio.wait([checked])
            if not checked.cancelled():
                checked.exception()  # its outcome no longer matters: nothing was put


class ChainReader(io.RawIOBase):
    """The segments as one seekable blocking file (the parser reads XLSX at random). Each segment is one streamed
    `GET` from the position on, a block at a time, never whole; a seek drops the stream, and the next read starts
    a ranged one. (obstore's buffered reader makes a ranged request per block instead: 2-3 times slower here.)"""

    def __init__(self, store: S3Store, chain: list[tuple[str, int]], length: int) -> None:
        self.store = store
        self.keys = [key for key, _ in chain]
        self.starts = list(itertools.accumulate((size for _, size in chain), initial=0))
        self.size = min(self.starts[-1], length)
        self.position = 0
        self.stream: BytesStream | None = None
        self.block = memoryview(b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        if base + offset != self.position:
            self.position = base + offset
            self.stream, self.block = None, memoryview(b"")
        return self.position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self.position >= self.size or not len(buffer):
            return 0
        while not self.block:
            if self.stream is None:
                self.stream = self._open_at(self.position)
            with bucket_errors():
                block = next(self.stream, None)
            if block is None:
                self.stream = None
                if self.position in self.starts:
                    continue  # the segment ended where the next begins
                raise OSError(f"a segment of the upload ends before {self.position}")
            self.block = memoryview(block).cast("B")
        count = min(len(buffer), len(self.block))
        memoryview(buffer)[:count] = self.block[:count]
        self.block = self.block[count:]
        self.position += count
        return count

    def _open_at(self, position: int) -> BytesStream:
        index = bisect.bisect_right(self.starts, position) - 1
        inside = position - self.starts[index]
        options: GetOptions = {"range": {"offset": inside}} if inside else {}
        with bucket_errors():
            result = obstore.get(self.store, self.keys[index], options=options)
        return result.stream(min_chunk_size=READ_BLOCK_BYTES)


class S3Storage:
    """Uploads in a bucket under their id: every host that reaches the bucket can append to and read any upload."""

    def __init__(self, store: S3Store) -> None:
        self.store = store

    def _prefix(self, upload_id: uuid.UUID) -> str:
        return uuid.UUID(str(upload_id)).hex

    async def _listed(self, upload_id: uuid.UUID) -> list[tuple[int, int, str]]:
        with bucket_errors():
            metas = await obstore.list(self.store, self._prefix(upload_id), chunk_size=1000).collect_async()
        return _segments(metas)

    async def writer(self, upload_id: uuid.UUID, offset: int) -> S3Writer:
        """The chain is checked while the body arrives: a LIST then cost 1-2 ms before each PATCH's first byte."""
        return S3Writer(self.store, upload_id, offset, asyncio.ensure_future(self._cut_back(upload_id, offset)))

    async def _cut_back(self, upload_id: uuid.UUID, offset: int) -> None:
        """`BytesElsewhere` unless the chain reaches `offset` exactly; segments from there on are deleted."""
        segments = await self._listed(upload_id)
        _, reached = _chain(segments, offset)
        if reached != offset:
            raise BytesElsewhere(f"the bucket holds a chain of {reached} of the upload's first {offset} bytes")
        stale = [key for start, _, key in segments if start >= offset]
        if stale:
            with bucket_errors():
                await obstore.delete_async(self.store, stale)

    def reader(self, upload_id: uuid.UUID, length: int | None = None) -> BinaryIO:
        with bucket_errors():
            metas = obstore.list(self.store, self._prefix(upload_id), chunk_size=1000).collect()
        chain, reached = _chain(_segments(metas), length)
        if not chain:
            raise FileNotFoundError(f"no stored bytes for upload {upload_id}")
        if length is not None and reached < length:
            raise FileNotFoundError(f"upload {upload_id}: {length - reached} of its {length} bytes are not stored")
        return io.BufferedReader(
            ChainReader(self.store, chain, reached if length is None else length), READ_BLOCK_BYTES
        )

    async def chunks(self, upload_id: uuid.UUID, length: int) -> AsyncIterator[bytes]:
        chain, reached = _chain(await self._listed(upload_id), length)
        if not chain:
            raise FileNotFoundError(f"no stored bytes for upload {upload_id}")
        if reached < length:
            raise OSError(f"the stored upload ends {length - reached} bytes short")
        remaining = length
        for key, _ in chain:
            with bucket_errors():
                result = await obstore.get_async(self.store, key)
                async for block in result.stream(min_chunk_size=READ_BLOCK_BYTES):
                    piece = bytes(block)[:remaining]
                    remaining -= len(piece)
                    yield piece
                    if not remaining:
                        return

    async def delete(self, upload_id: uuid.UUID) -> None:
        keys = [key for _, _, key in await self._listed(upload_id)]
        if keys:
            with bucket_errors():
                await obstore.delete_async(self.store, keys)
