"""What follows a change to an upload: its subscribers are told, on `upload:<id>` and on the owner's channel.

Progress is rate-limited: an event each time another tenth of the upload has arrived, or 250 ms after the last
one, whichever comes first; so a fast upload sends about ten and a slow one a steady few per second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from db.models import UploadStatusName
from domain.events.bus import Event, EventBus, user_channel

PROGRESS_STEPS = 10
PROGRESS_INTERVAL_S = 0.25
RECORD_INTERVAL_S = 1.0
"""How often a long PATCH records its offset (and renews its lease) in PostgreSQL while bytes keep arriving."""


def upload_channel(upload_id: object) -> str:
    return f"upload:{upload_id}"


class UploadNotifier:
    def __init__(self, events: EventBus, upload_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        self.events = events
        self.upload_id = upload_id
        self.owner_id = owner_id
        self._progress: asyncio.Future[None] | None = None
        self._next_progress: tuple[int, int] | None = None

    def status_events(self, status: UploadStatusName, **details: Any) -> list[Event]:
        """A change of status, told on the upload's channel and on its owner's."""
        data = {"id": str(self.upload_id), "status": status, **details}
        return [
            (upload_channel(self.upload_id), "upload.status", data),
            (user_channel(self.owner_id), "upload.status", data),
        ]

    def progress_event(self, offset: int, size: int) -> Event:
        data = {"id": str(self.upload_id), "offset": offset, "size": size, "progress": offset / size if size else 1.0}
        return (upload_channel(self.upload_id), "upload.progress", data)

    async def status(self, status: UploadStatusName, **details: Any) -> None:
        await self.publish(self.status_events(status, **details))

    async def progress(self, offset: int, size: int) -> None:
        await self.publish([self.progress_event(offset, size)])

    def progress_soon(self, offset: int, size: int) -> None:
        """Progress told without holding up the caller (a PATCH's body waited ~0.5 ms a publish, more under load):
        one publish at a time, in order; an offset that comes while one is in flight replaces any still waiting."""
        self._next_progress = (offset, size)
        if self._progress is None or self._progress.done():
            self._progress = asyncio.ensure_future(self._publish_progress())

    async def _publish_progress(self) -> None:
        while self._next_progress is not None:
            (offset, size), self._next_progress = self._next_progress, None
            await self.progress(offset, size)

    async def settle(self) -> None:
        """Wait for the progress still being told, so that what follows is told after it."""
        if self._progress is not None:
            await self._progress

    async def publish(self, events: list[Event]) -> None:
        """In their order, in one round trip to Redis: a request that ends an upload waits for one, not three."""
        await self.events.publish_many(events)


class ProgressPacer:
    """Says when the next progress event is due: at each further tenth, or after PROGRESS_INTERVAL_S."""

    def __init__(self, offset: int, size: int) -> None:
        self.size = size
        self.step = max(size // PROGRESS_STEPS, 1)
        self.next_offset = offset + self.step
        self.next_time = time.monotonic() + PROGRESS_INTERVAL_S

    def due(self, offset: int) -> bool:
        now = time.monotonic()
        if offset < self.next_offset and now < self.next_time:
            return False
        self.next_offset = offset + self.step
        self.next_time = now + PROGRESS_INTERVAL_S
        return True


class RecordPacer:
    """Says when an appending request should next record its offset: every RECORD_INTERVAL_S."""

    def __init__(self) -> None:
        self.next_time = time.monotonic() + RECORD_INTERVAL_S

    def due(self) -> bool:
        now = time.monotonic()
        if now < self.next_time:
            return False
        self.next_time = now + RECORD_INTERVAL_S
        return True
