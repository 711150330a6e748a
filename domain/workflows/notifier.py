"""What follows a committed change to a workflow: its cache keys are dropped and its subscribers are told.

Both the API's writes and the workers' runs call these, so every path that changes what a key shows also
drops that key, and every status change reaches the workflow's and the owner's channels.
"""

from __future__ import annotations

import uuid
from typing import Any

from db.models import StepStatusName, WorkflowStatusName
from domain.cache import Cache
from domain.events.bus import Event, EventBus, user_channel, workflow_channel
from domain.workflows.cache_keys import WorkflowCacheKeys


class WorkflowNotifier:
    def __init__(self, cache: Cache, events: EventBus, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        self.keys = WorkflowCacheKeys(cache)
        self.events = events
        self.workflow_id = workflow_id
        self.owner_id = owner_id

    async def changed(self) -> None:
        await self.keys.changed(self.workflow_id, self.owner_id)

    async def announce(self, events: list[Event]) -> None:
        """After a commit: the workflow's keys dropped once, then `events` published in order in one round trip."""
        await self.changed()
        await self.events.publish_many(events)

    async def workflow_status(self, status: WorkflowStatusName, **details: Any) -> None:
        await self.announce(self.workflow_status_events(status, **details))

    def workflow_status_events(self, status: WorkflowStatusName, **details: Any) -> list[Event]:
        data = {"id": str(self.workflow_id), "status": status, **details}
        return [
            (workflow_channel(self.workflow_id), "workflow.status", data),
            (user_channel(self.owner_id), "workflow.status", data),
        ]

    def step_status_event(self, position: int, kind: str, status: StepStatusName, error: str | None = None) -> Event:
        data = {"workflow_id": str(self.workflow_id), "position": position, "kind": kind, "status": status}
        return workflow_channel(self.workflow_id), "step.status", {**data, "error": error}

    def progress_event(self, kind: str, step_progress: float, workflow_progress: float) -> Event:
        data = {
            "id": str(self.workflow_id),
            "progress": workflow_progress,
            "step": kind,
            "step_progress": step_progress,
        }
        return workflow_channel(self.workflow_id), "workflow.progress", data
