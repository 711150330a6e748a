"""Uploads in PostgreSQL: the offset of record and who may append to it now.

Appending takes a lease: a conditional UPDATE that succeeds only while no other request holds an unexpired one,
so two concurrent PATCHes to one upload cannot both write (the second is answered 423). The holder renews it as
bytes arrive and gives it back with the new offset; a holder that dies simply lets it lapse. Every statement names
the owner (or the lease, which only the owner's request can hold), so another user's upload reads as missing.

One statement per step (their SQL in `queries.py`) on the asyncpg pool: through the ORM engine each cost ~3 ms
(a pre-ping, BEGIN, COMMIT), which was most of a 10 MB upload's time.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

import asyncpg

from db.models import UploadStatusName
from domain.errors import ConflictError, Gone, Locked, NotFound
from domain.uploads import queries

NOT_FOUND = "no upload with this id"


@dataclass(frozen=True)
class UploadHead:
    """What a tus HEAD reports."""

    length: int
    offset: int
    status: UploadStatusName
    tus_metadata: str | None
    expires_at: datetime.datetime | None
    filename: str | None


@dataclass(frozen=True)
class Lease:
    upload_id: uuid.UUID
    owner_id: uuid.UUID
    token: uuid.UUID
    length: int
    offset: int


@dataclass(frozen=True)
class Released:
    status: UploadStatusName
    offset: int
    expires_at: datetime.datetime | None


class UploadRepository:
    def __init__(self, pool: asyncpg.Pool, lease_s: float, expiry_s: int) -> None:
        self.pool = pool
        self.lease = datetime.timedelta(seconds=lease_s)
        self.expiry = datetime.timedelta(seconds=expiry_s)

    async def create(
        self, owner_id: uuid.UUID, length: int, filename: str | None, filetype: str | None, tus_metadata: str | None
    ) -> tuple[uuid.UUID, datetime.datetime | None]:
        """A new upload and when it expires unless finished; an empty one is complete at once (`processing`)."""
        upload_id = uuid.uuid4()
        expires_at: datetime.datetime | None = await self.pool.fetchval(
            queries.CREATE, upload_id, owner_id, length, filename, filetype, tus_metadata, self.expiry
        )
        return upload_id, expires_at

    async def head(self, upload_id: uuid.UUID, owner_id: uuid.UUID) -> UploadHead:
        """The upload as tus shows it: 404 when missing or not the caller's, 410 once expired."""
        row = await self.pool.fetchrow(queries.HEAD, upload_id, owner_id)
        if row is None:
            raise NotFound(NOT_FOUND)
        if row["lapsed"]:
            raise Gone("this upload expired before it was complete")
        expires_at = row["expires_at"] if row["status"] == "uploading" else None
        return UploadHead(
            row["length"], row["upload_offset"], row["status"], row["tus_metadata"], expires_at, row["filename"]
        )

    async def acquire(self, upload_id: uuid.UUID, owner_id: uuid.UUID, offset: int) -> Lease:
        """The right to append at `offset`; 404, 410, 409 (offset or state) or 423 (another request appends)."""
        token = uuid.uuid4()
        length = await self.pool.fetchval(queries.ACQUIRE, upload_id, owner_id, offset, token, self.lease)
        if length is not None:
            return Lease(upload_id, owner_id, token, length, offset)
        head = await self.head(upload_id, owner_id)
        if head.status != "uploading":
            raise ConflictError(f"Upload-Offset: the upload is complete ({head.offset} bytes)")
        if head.offset != offset:
            raise ConflictError(f"Upload-Offset: {offset} given, but the upload is at {head.offset}")
        raise Locked("another request is appending to this upload; retry after it ends")

    async def renew(self, lease: Lease, offset: int) -> bool:
        """Record progress so far and extend the lease; False when the lease was lost (the upload deleted)."""
        status: str = await self.pool.execute(queries.RENEW, lease.upload_id, lease.token, offset, self.lease)
        return status != "UPDATE 0"

    async def release(self, lease: Lease, offset: int) -> Released | None:
        """Give the lease back at `offset`; complete at the upload's length (→ `processing`). None if it was lost."""
        row = await self.pool.fetchrow(queries.RELEASE, lease.upload_id, lease.token, offset, self.expiry)
        return None if row is None else Released(row["status"], row["upload_offset"], row["expires_at"])

    async def delete(self, upload_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        status: str = await self.pool.execute(queries.DELETE, upload_id, owner_id)
        if status == "DELETE 0":
            raise NotFound(NOT_FOUND)
