"""After an upload is complete: the parse job, the expiry of abandoned uploads, and finding lost parses.

The parse reads the stored file as a stream in a thread (the loop stays free for other jobs) and stores the
cash flows summed per period in the upload's row, where a workflow's `ingest` step reads them. Every write is
conditional on the upload still being `processing`, so a parse that finds its upload deleted writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import logging
import uuid
from typing import BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Upload
from domain.events.bus import EventBus
from domain.uploads.notifier import UploadNotifier
from domain.uploads.parser import Ledger, LedgerError, parse_ledger
from domain.uploads.storage import UploadStorage

logger = logging.getLogger("roi.uploads")


def _parse_stored(storage: UploadStorage, upload_id: uuid.UUID, length: int) -> Ledger:
    stream: BinaryIO = storage.reader(upload_id, length) if length else io.BytesIO()  # an empty upload stores no file
    with stream:
        return parse_ledger(stream)


async def parse_upload(engine: AsyncEngine, storage: UploadStorage, events: EventBus, upload_id: uuid.UUID) -> str:
    """Parse a complete upload into cash flows: `ready`, or `failed` with an error naming the line. Returns which."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(Upload.owner_id, Upload.length).where(Upload.id == upload_id, Upload.status == "processing")
            )
        ).one_or_none()
    if row is None:
        return "not processing"
    notifier = UploadNotifier(events, upload_id, row.owner_id)
    try:
        ledger = await asyncio.to_thread(_parse_stored, storage, upload_id, row.length)
    except LedgerError as error:
        return await _fail(engine, notifier, str(error))
    except FileNotFoundError:
        return await _fail(engine, notifier, "the uploaded file is no longer stored in full; upload it again")
    async with engine.begin() as conn:
        stored = await conn.execute(
            update(Upload)
            .where(Upload.id == upload_id, Upload.status == "processing")
            .values(
                status="ready",
                rows=ledger.rows,
                periods=len(ledger.cash_flows),
                cash_flows=ledger.cash_flows,
                error=None,
                updated_at=func.now(),
            )
        )
    if not stored.rowcount:
        return "not processing"
    await notifier.status("ready", rows=ledger.rows, periods=len(ledger.cash_flows))
    return "ready"


async def _fail(engine: AsyncEngine, notifier: UploadNotifier, error: str) -> str:
    async with engine.begin() as conn:
        await conn.execute(
            update(Upload)
            .where(Upload.id == notifier.upload_id, Upload.status == "processing")
            .values(status="failed", error=error, updated_at=func.now())
        )
    await notifier.status("failed", error=error)
    return "failed"


async def expire_uploads(engine: AsyncEngine, storage: UploadStorage, events: EventBus) -> int:
    """Unfinished uploads past `expires_at` (and not being appended to): bytes removed, status `expired`."""
    async with engine.begin() as conn:
        expired = (
            await conn.execute(
                update(Upload)
                .where(
                    Upload.status == "uploading",
                    Upload.expires_at <= func.now(),
                    Upload.lease_expires_at.is_(None) | (Upload.lease_expires_at < func.now()),
                )
                .values(status="expired", lease_token=None, lease_expires_at=None, updated_at=func.now())
                .returning(Upload.id, Upload.owner_id)
            )
        ).all()
    for upload_id, owner_id in expired:
        await storage.delete(upload_id)
        await UploadNotifier(events, upload_id, owner_id).status("expired")
    if expired:
        logger.info("expired %d unfinished uploads", len(expired))
    return len(expired)


async def stale_parses(engine: AsyncEngine, older_than_s: float) -> list[uuid.UUID]:
    """Uploads `processing` for a while: their parse job may have been lost with Redis."""
    cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=older_than_s)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Upload.id).where(Upload.status == "processing", Upload.updated_at < cutoff).limit(1000)
        )
    return [row.id for row in rows]


async def upload_cash_flows(engine: AsyncEngine, upload_id: uuid.UUID, owner_id: uuid.UUID) -> list[float] | None:
    """A ready upload's cash flows, for a workflow's `ingest` step; None if it is gone or not the owner's."""
    async with engine.connect() as conn:
        flows: list[float] | None = (
            await conn.execute(
                select(Upload.cash_flows).where(
                    Upload.id == upload_id, Upload.owner_id == owner_id, Upload.status == "ready"
                )
            )
        ).scalar_one_or_none()
    return flows
