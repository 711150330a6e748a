"""The contract's Upload objects (API.md, "Uploads"); the JSON itself is rendered by PostgreSQL (queries.py)."""

from __future__ import annotations

import datetime
import uuid

import msgspec

from db.models import UploadStatusName


class UploadOut(msgspec.Struct, frozen=True):
    id: uuid.UUID
    filename: str | None
    size: int
    offset: int
    status: UploadStatusName
    rows: int | None
    periods: int | None
    error: str | None
    created_at: datetime.datetime
    expires_at: datetime.datetime | None


class UploadPage(msgspec.Struct, frozen=True):
    items: list[UploadOut]
    total: int
    limit: int
    offset: int
    next_cursor: str | None
    """Pass as `cursor` for the page after this one; null on the last page."""
