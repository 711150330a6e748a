"""The job queue: SAQ's Redis queue with three priority lanes.

SAQ's Redis queue is one FIFO list. Here every job goes into the lane of its priority (`high`, `normal`,
`low`), and a worker's blocking dequeue (BLMPOP) always takes from the highest non-empty lane, so a high job
starts before any waiting normal or low one, with SAQ's ~1 ms enqueue→start. SAQ's `_enqueue` and `_retry` push
onto `_queued`; here `_queued` names the lane of the job the current task is enqueuing or retrying (a context
variable, so enqueues of different priorities running at once each see their own), and SAQ's own list, the normal
lane, otherwise.

SAQ's update and finish send their notification in the same round trip as the record. Three of SAQ's behaviours
are changed on the way:
- a dequeued job is marked active *before* it enters the active list, so a concurrent sweep can no longer
  fail it as "swept" (SAQ's start-up race); that record is already the one SAQ's worker writes next (status,
  start, attempt, worker), so its own `update(status=ACTIVE)` costs no second round trip;
- a dequeue takes a job only while its record still says queued, and the reconciler puts a job back in its lane
  only while it is queued and in no lane and no active list, each in one atomic script: a job is never run twice;
- sweeps run every `SWEEP_INTERVAL_S` rather than at most once a minute.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, RedisError
from saq import Job, Status
from saq.queue.redis import RedisQueue
from saq.utils import now

from infra.jobs import LANE_OF_PRIORITY, PRIORITIES, Priority

QUEUE_NAME = "roi"
SWEEP_INTERVAL_S = 5

_TAKE = """
local stored = redis.call('GET', KEYS[1])
if not stored or cjson.decode(stored).status ~= 'queued' then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], KEYS[1])
redis.call('PUBLISH', KEYS[1], ARGV[2])
return 1
"""
"""A popped job id (KEYS[1]) becomes active (record ARGV[1], into the active list KEYS[2], notification ARGV[2])
only if still queued."""
_PUT_BACK = """
local stored = redis.call('GET', KEYS[1])
if not stored or cjson.decode(stored).status ~= 'queued' then return 0 end
if redis.call('LPOS', KEYS[2], KEYS[1]) or redis.call('LPOS', KEYS[3], KEYS[1]) then return 0 end
redis.call('RPUSH', KEYS[2], KEYS[1])
return 1
"""
"""A job (KEYS[1]) goes back into its lane (KEYS[2]) only if still queued and in neither that lane nor the active
list (KEYS[3])."""
_ENQUEUE = """
if not redis.call('ZSCORE', KEYS[1], KEYS[2]) and redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('SET', KEYS[2], ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
    if ARGV[2] == '0' then redis.call('RPUSH', KEYS[3], KEYS[2]) end
    return 1
else
    return nil
end
"""
"""SAQ's enqueue script (`RedisQueue._enqueue`, pinned by tests/unit/test_saq_contract.py), for `enqueue_in`."""

_lane_in_use: ContextVar[tuple[PriorityRedisQueue, str] | None] = ContextVar("lane_in_use", default=None)
"""The queue and lane of the job this task is enqueuing or retrying right now."""


class PriorityRedisQueue(RedisQueue):
    """A SAQ Redis queue whose dequeue honours `Job.priority` (0 = high, 1 = normal, 2 = low)."""

    def __init__(
        self, redis: Redis, name: str = QUEUE_NAME, drains: tuple[Priority, ...] = PRIORITIES, **kwargs: Any
    ) -> None:
        """`drains`: the lanes this queue's dequeue takes from, highest first (an express worker drains `high`)."""
        super().__init__(redis, name=name, **kwargs)
        # SAQ's own list is the normal lane, so anything SAQ itself re-queues lands in a valid lane.
        self.lanes = [self.namespace("queued:high"), self._normal_lane, self.namespace("queued:low")]
        self.drained = [self.lanes[LANE_OF_PRIORITY[priority]] for priority in drains]
        self._take = redis.register_script(_TAKE)
        self._put_back = redis.register_script(_PUT_BACK)
        self._enqueue_sha = redis.register_script(_ENQUEUE).sha
        self.worker_id: str | None = None
        """The id of the worker dequeuing from this queue, recorded in the jobs it activates."""
        self._activated: set[str] = set()
        """Jobs dequeued here whose active record is written: the worker's activation of each has nothing to add."""

    async def disconnect(self) -> None:
        """Close even when Redis is gone: shutting down must not depend on it."""
        try:
            await super().disconnect()
        except (TimeoutError, RedisError, OSError):
            await self.redis.connection_pool.disconnect()

    def lane(self, job: Job) -> str:
        return self.lanes[min(max(job.priority, 0), len(self.lanes) - 1)]

    @property
    def _queued(self) -> str:
        in_use = _lane_in_use.get()
        return in_use[1] if in_use is not None and in_use[0] is self else self._normal_lane

    @_queued.setter
    def _queued(self, lane: str) -> None:
        self._normal_lane = lane  # SAQ's __init__ names its list

    async def _enqueue(self, job: Job) -> Job | None:
        token = _lane_in_use.set((self, self.lane(job)))
        try:
            return await super()._enqueue(job)
        finally:
            _lane_in_use.reset(token)

    async def prepare(self, function: str, **kwargs: Any) -> Job:
        """The job `enqueue(function, **kwargs)` would queue, for `enqueue_in` (SAQ's `Queue.enqueue` up to its
        `_enqueue`)."""
        fields = {name: value for name, value in kwargs.items() if name in Job.__dataclass_fields__}
        arguments = {name: value for name, value in kwargs.items() if name not in Job.__dataclass_fields__}
        job = Job(function=function, **fields, kwargs=arguments or None, queue=self)
        job.queued = now()
        job.status = Status.QUEUED
        await self._before_enqueue(job)
        return job

    def enqueue_in(self, pipe: Pipeline, job: Job) -> None:
        """Add the enqueue of `job` (from `prepare`) to `pipe`, for a caller with more to send in the same round trip
        (on any client of this Redis); its answer, from a pipe executed with `raise_on_error=False`, goes to
        `enqueued`."""
        keys = (self._incomplete, job.id, self.lane(job), job.abort_id)
        pipe.execute_command("EVALSHA", self._enqueue_sha, len(keys), *keys, self.serialize(job), job.scheduled)

    async def enqueued(self, job: Job, answer: Any) -> Job | None:
        """`job` once `enqueue_in`'s answer says it was queued, None when it was already; raises what Redis raised.
        Once Redis has lost the script (a restart), it is loaded and the job enqueued again (it had not been)."""
        if isinstance(answer, NoScriptError):
            await self.redis.script_load(_ENQUEUE)
            return await self._enqueue(job)
        if isinstance(answer, BaseException):
            raise answer
        return job if answer else None

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:  # noqa: ASYNC109
        job_id = await self.pop(timeout)
        return None if job_id is None else await self.take(job_id)

    async def pop(self, timeout: float) -> bytes | None:  # noqa: ASYNC109
        """A dequeue's first half: the next job id out of the highest non-empty lane it drains, blocking."""
        popped = await self.redis.blmpop(timeout, len(self.drained), *self.drained, direction="LEFT", count=1)
        if popped is None:
            return None
        job_id = popped[1][0]
        assert isinstance(job_id, bytes)
        return job_id

    async def take(self, job_id: bytes) -> Job | None:
        """A dequeue's second half: the popped job marked active, then into the active list. None when it is no
        longer queued: the reconciler saw it in no lane while this worker held it popped, put it back, and another
        worker took it first (or ran it to its end); running it again would overwrite that run's record."""
        job = await self._get_job_by_id(job_id)
        if job is None:
            await self.redis.zrem(self._incomplete, job_id)
            return None
        if job.status != Status.QUEUED:
            return None
        # The record SAQ's worker is about to write (Worker.process: start, attempt, worker, then
        # update(status=ACTIVE)), written now with the move to the active list and the notification. With `started`
        # unset (0) a sweep would see the job as past its timeout. The job handed back keeps its attempts: the worker
        # counts this one.
        job.status = Status.ACTIVE
        job.started = job.touched = now()
        job.worker_id = self.worker_id
        job.attempts += 1
        record = self.serialize(job)
        job.attempts -= 1
        if not await self._take(keys=[job_id, self._active], args=[record, job.status]):
            return None
        self._activated.add(job.id)
        return job

    async def put_back(self, job: Job) -> bool:
        """Put a queued job that is in no lane (popped by a worker that died before taking it) back into its lane;
        whether it was. Nothing when a worker has taken it since it was read."""
        return bool(await self._put_back(keys=[job.id, self.lane(job), self._active]))

    async def _update(self, job: Job, status: Status | None = None, **kwargs: Any) -> None:
        """SAQ's update, with the record and its notification in one round trip when the status is known; nothing for
        the worker's activation of a job `dequeue` activated already."""
        if status == Status.ACTIVE and job.id in self._activated:
            self._activated.discard(job.id)
            return
        if not status:
            await super()._update(job, status, **kwargs)
            return
        job.status = status
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(job.id, self.serialize(job))
            pipe.publish(job.id, job.status)
            await pipe.execute()

    async def _finish(self, job: Job, status: Status, *, result: Any = None, error: str | None = None) -> None:
        """SAQ's finish (the record out of the active list and the incomplete set, kept `ttl` seconds), with its
        notification in the same round trip."""
        self._activated.discard(job.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._active, 1, job.id)
            pipe.zrem(self._incomplete, job.id)
            if job.ttl > 0:
                pipe.setex(job.id, job.ttl, self.serialize(job))
            elif job.ttl == 0:
                pipe.set(job.id, self.serialize(job))
            else:
                pipe.delete(job.id)
            pipe.publish(job.id, job.status)
            await pipe.execute()

    async def abort(self, job: Job, error: str, ttl: float = 5) -> None:
        if job.status == Status.QUEUED:
            removed = await self.redis.lrem(self.lane(job), 0, job.id)
            if removed:
                # Now in no lane, SAQ's abort finds it in none and treats it as running: finish it here.
                job.status = Status.ABORTING
                await self.finish(job, Status.ABORTED, error=error)
                return
        await super().abort(job, error, ttl)

    async def _retry(self, job: Job, error: str | None) -> None:
        token = _lane_in_use.set((self, self.lane(job)))
        try:
            await super()._retry(job, error)
        finally:
            _lane_in_use.reset(token)

    async def sweep(self, lock: int = SWEEP_INTERVAL_S, abort: float = 5.0) -> list[str]:
        return await super().sweep(lock=lock, abort=abort)

    async def count(self, kind: Literal["queued", "active", "incomplete"]) -> int:
        if kind == "queued":
            return sum((await self.depths()).values())
        return await super().count(kind)

    async def is_in_lane(self, job: Job) -> bool:
        return await self.redis.lpos(self.lane(job), job.id) is not None

    async def waiting_ids(self) -> set[str]:
        """The ids of every job in a lane now."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for lane in self.lanes:
                pipe.lrange(lane, 0, -1)
            lanes = await pipe.execute()
        return {job_id.decode() for lane in lanes for job_id in lane}

    async def depths(self) -> dict[Priority, int]:
        """Jobs waiting in each lane, for the queue-depth metric."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for lane in self.lanes:
                pipe.llen(lane)
            lengths = await pipe.execute()
        return dict(zip(PRIORITIES, lengths, strict=True))

    async def lane_view(self, priority: Priority, offset: int, limit: int) -> tuple[int, list[Job], list[Job]]:
        """A lane's depth, its running jobs and a page of its waiting ones: what the queue UI shows of a lane."""
        lane = self.lanes[LANE_OF_PRIORITY[priority]]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(lane)
            pipe.lrange(self._active, 0, -1)
            pipe.lrange(lane, offset, offset + limit - 1)
            depth, active_ids, waiting_ids = await pipe.execute()
        stored = await self.redis.mget([*active_ids, *waiting_ids]) if active_ids or waiting_ids else []
        jobs = [self.deserialize(raw) for raw in stored]
        active = [job for job in jobs[: len(active_ids)] if job is not None and self.lane(job) == lane]
        waiting = [job for job in jobs[len(active_ids) :] if job is not None]
        return depth, active, waiting


def create_queue(redis_url: str, namespace: str, drains: tuple[Priority, ...] = PRIORITIES) -> PriorityRedisQueue:
    """The queue on its own connection pool: blocking dequeues must not share the cache's short timeouts."""
    return PriorityRedisQueue(Redis.from_url(redis_url), name=f"{namespace}:{QUEUE_NAME}", drains=drains)
