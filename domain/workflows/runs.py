"""Queueing a run: the busiest write of all (a department pressing Run at 9:00), so it takes no ORM session.

One statement on the raw pool moves the workflow to `queued` and reads what the run will need; one Redis round trip
drops its cache keys, publishes `queued` and enqueues the job, which carries those inputs unless the series is long
(the worker then reads them). One instance per process: nothing here belongs to a request.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from functools import partial

import asyncpg

from domain.cache import Cache
from domain.errors import ConflictError, NotFound
from domain.events.bus import EventBus
from domain.workflows import queries
from domain.workflows.notifier import WorkflowNotifier
from domain.workflows.run_state import RunInputs
from domain.workflows.schemas import RunAccepted
from domain.workflows.service import ACTIVE_STATUSES
from infra.jobs import RUN_WORKFLOW, Priority, workflow_run
from infra.queue import PriorityRedisQueue
from infra.redis import REDIS_FAILURES

logger = logging.getLogger("roi.workflows")

JOB_CARRIES_FLOWS = 100
"""Up to this many typed-in cash flows travel with the run's job (~2 kB): SAQ writes a job's record three times a run,
so a longer series is read by the worker instead."""


class RunQueue:
    def __init__(self, asyncpg_pool: asyncpg.Pool, cache: Cache, events: EventBus, queue: PriorityRedisQueue) -> None:
        self.asyncpg_pool = asyncpg_pool
        self.cache = cache
        self.events = events
        self.queue = queue

    async def run_workflow(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> RunAccepted:
        """draft or finished → queued, under a new run id; the job is queued after the commit.

        If Redis cannot take the job now, the workflow stays `queued` in PostgreSQL and the workers'
        reconciler queues it once Redis answers: a run asked for is never lost.
        """
        job_id = uuid.uuid4().hex
        priority, inputs = await self._queue_run(workflow_id, owner_id, job_id)
        notifier = WorkflowNotifier(self.cache, self.events, workflow_id, owner_id)
        carried = None if inputs is None else inputs.as_job_argument()
        job = await self.queue.prepare(RUN_WORKFLOW, **workflow_run(str(workflow_id), job_id, priority, carried))
        # The job goes in the same round trip as the cache's drop and the `queued` event, after them: a worker's
        # `running` cannot overtake `queued`.
        answer = await notifier.announce(
            notifier.workflow_status_events("queued", job_id=job_id), then=partial(self.queue.enqueue_in, job=job)
        )
        try:
            await self.queue.enqueued(job, answer)
        except REDIS_FAILURES:
            logger.warning("workflow %s stays queued until Redis takes its job", workflow_id, exc_info=True)
        return RunAccepted(id=workflow_id, status="queued", job_id=job_id)

    async def _queue_run(
        self, workflow_id: uuid.UUID, owner_id: uuid.UUID, job_id: str
    ) -> tuple[Priority, RunInputs | None]:
        """Its priority and, for its job to carry, its run's inputs; NotFound or ConflictError when it cannot be
        queued."""
        while True:
            row = await self.asyncpg_pool.fetchrow(
                queries.QUEUE_RUN, workflow_id, owner_id, job_id, datetime.datetime.now(datetime.UTC), JOB_CARRIES_FLOWS
            )
            if row is not None:
                return row["priority"], RunInputs.read(owner_id, row) if row["carried"] else None
            status: str | None = await self.asyncpg_pool.fetchval(queries.OWNED_STATUS, workflow_id, owner_id)
            if status is None:
                raise NotFound("no workflow with this id")
            if status in ACTIVE_STATUSES:
                raise ConflictError(f"the workflow is already {status}")
            # It ended between the two statements: queue it now.
