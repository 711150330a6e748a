"""What follows a committed change to a workflow: its cache keys are dropped and its subscribers are told.

Both the API's writes and the workers' runs call these, so every path that changes what a key shows also
drops that key, and every status change reaches the workflow's and the owner's channels.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from redis.asyncio.client import Pipeline

from db.models import StepStatusName, WorkflowStatusName
from domain.cache import Cache
from domain.events.bus import Event, EventBus, user_channel, workflow_channel
from domain.workflows.cache_keys import WorkflowCacheKeys
from infra.redis import REDIS_FAILURES


class WorkflowNotifier:
    def __init__(self, cache: Cache, events: EventBus, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        self.keys = WorkflowCacheKeys(cache)
        self.events = events
        self.workflow_id = workflow_id
        self.owner_id = owner_id

    async def changed(self) -> None:
        await self.keys.changed(self.workflow_id, self.owner_id)

    async def announce(self, events: list[Event], then: Callable[[Pipeline], None] | None = None) -> Any:
        """After a commit: the workflow's keys dropped, then `events` published in order, in one round trip.

        `then` adds one more command to the same round trip, sent after the events (a run's job, queued after its
        `queued` event); its answer is returned, or the error that kept it from Redis."""
        cache, keys = self.keys.cache, self.keys.of(self.workflow_id, self.owner_id)
        if cache.redis is not self.events.redis:
            await cache.invalidate(*keys)
            await self.events.publish_many(events)
            return None if then is None else await self._alone(then)
        invalidating = False
        try:
            async with self.events.redis.pipeline(transaction=False) as pipe:
                invalidating = cache.invalidate_in(pipe, *keys)
                if events:
                    self.events.publish_in(pipe, events)
                if then is not None:
                    then(pipe)
                answers = await pipe.execute(raise_on_error=False)
        except REDIS_FAILURES as error:
            if invalidating:
                cache.invalidation_failed(keys, error)
            if events:
                self.events.dropped(events, error)
            return error
        dropped = 2 * len(keys) if invalidating else 0
        failed = next((answer for answer in answers[:dropped] if isinstance(answer, Exception)), None)
        if failed is not None:
            cache.invalidation_failed(keys, failed)
        if events:
            await self.events.published(events, answers[dropped])
        return answers[-1] if then is not None else None

    async def _alone(self, command: Callable[[Pipeline], None]) -> Any:
        try:
            async with self.events.redis.pipeline(transaction=False) as pipe:
                command(pipe)
                [answer] = await pipe.execute(raise_on_error=False)
        except REDIS_FAILURES as error:
            return error
        return answer

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
