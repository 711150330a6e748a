"""The worker process: SAQ runs workflow jobs from the priority lanes; a reconciler keeps PostgreSQL honest.

PostgreSQL holds the state of record. The reconciler, every `WORKER_RECONCILE_INTERVAL_S`, fails runs whose worker
stopped beating (a SIGKILLed process) and re-queues runs that are `queued` in PostgreSQL but whose job Redis
no longer has (Redis restarted, or the enqueue after the commit failed); it also folds the lists' count changes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from typing import Any, Literal

from saq import Job, Status, Worker
from saq.types import PartialTimersDict

from db.pools import create_asyncpg_pool, create_engine
from domain.services import Services
from domain.uploads.processing import expire_uploads, parse_upload, stale_parses
from domain.workflows.counts import fold_workflow_counts
from domain.workflows.notifier import WorkflowNotifier
from domain.workflows.run_state import RunInputs, RunStore, fail_lost_runs, stale_queued_runs
from domain.workflows.runner import run_workflow
from infra.closing import raise_if_cancelled
from infra.jobs import (
    NOOP,
    PARSE_UPLOAD,
    PRIORITIES,
    RUN_WORKFLOW,
    Priority,
    enqueue_upload_parse,
    enqueue_workflow_run,
    parse_job_key,
)
from infra.queue import create_queue
from infra.redis import REDIS_FAILURES
from infra.settings import Settings
from workers.metrics import JOB_DURATION, JOB_START_LATENCY, RUNS_RECONCILED

logger = logging.getLogger("roi.worker")

EXPRESS_SLOTS = 1
MAX_REQUEUES = 3
"""Times a queued run's job may fail before it starts and be queued again (PostgreSQL restarting under its claim)."""
ABORTED_IN_QUEUE = "aborted from the queue UI"
ABORT_CHECK_INTERVAL_S = 0.5
"""How often a worker reads its running jobs' records for an abort: one MGET while any has run this long."""


async def run_workflow_job(
    ctx: dict[str, Any], *, workflow_id: str, run_id: str, inputs: dict[str, Any] | None = None
) -> str:
    """`inputs`: what the run would read of its workflow, carried by the job (not by one the reconciler queued again,
    nor by one of a long series)."""
    job = ctx["job"]
    resources: Services = ctx["services"]
    started = time.time()
    JOB_START_LATENCY.labels(PRIORITIES[job.priority]).observe(max(0.0, started - job.queued / 1000))
    try:
        carried = None if inputs is None else RunInputs.from_job_argument(inputs)
        outcome = await run_workflow(resources, uuid.UUID(workflow_id), run_id, touch_job=job.update, inputs=carried)
    except asyncio.CancelledError:
        store = RunStore(resources.engine, resources.run_pool, uuid.UUID(workflow_id), run_id)
        if await _aborted(job):
            # An operator aborted the job (the SAQ UI): the run ends `cancelled`, as a cancel through the API would.
            owner_id = await store.cancel(ABORTED_IN_QUEUE)
            if owner_id is not None:
                notifier = WorkflowNotifier(resources.cache, resources.events, uuid.UUID(workflow_id), owner_id)
                await notifier.workflow_status("cancelled", error=ABORTED_IN_QUEUE)
        else:
            # The worker is shutting down: hand the run back (queued, same run id). SAQ re-queues the job itself,
            # and should that fail, the reconciler re-queues it; either way the next worker restarts the run.
            await store.release()
        raise
    JOB_DURATION.labels(outcome).observe(time.time() - started)
    return outcome


async def parse_upload_job(ctx: dict[str, Any], *, upload_id: str) -> str:
    services: Services = ctx["services"]
    started = time.time()
    outcome = await parse_upload(services.engine, services.storage, services.events, uuid.UUID(upload_id))
    JOB_DURATION.labels(f"parse {outcome}").observe(time.time() - started)
    return outcome


async def noop_job(ctx: dict[str, Any]) -> str:
    """Nothing: run through the same queue, lanes and slots as a workflow, it measures what they cost alone."""
    return "done"


async def _aborted(job: Job) -> bool:
    """Whether the job was cancelled by an abort (its record says so) rather than by the worker shutting down."""
    if job.queue is None:
        return False
    try:
        current = await job.queue.job(job.key)
    except REDIS_FAILURES:
        return False
    return current is not None and current.status in (Status.ABORTING, Status.ABORTED)


def _raised(error: str | None) -> str:
    """The exception a failed job raised: SAQ records the whole traceback, whose head is this server's file paths
    (which the run's owner must not see, and which would fill the run's error before the exception itself)."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no error given"


class Reconciler:
    def __init__(self, services: Services) -> None:
        self.resources = services
        self.queue = services.queue
        self.storage = services.storage
        self.settings = services.settings

    async def run_forever(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:
                logger.exception("reconciliation failed")
            raise_if_cancelled()
            await asyncio.sleep(self.settings.worker_reconcile_interval_s)

    async def reconcile(self) -> None:
        await self.reconcile_runs()
        await self.reconcile_uploads()
        await fold_workflow_counts(self.resources.engine)

    async def reconcile_uploads(self) -> None:
        """Unfinished uploads past their expiry are removed; a complete upload whose parse job is lost is re-queued."""
        await expire_uploads(self.resources.engine, self.storage, self.resources.events)
        stale = await stale_parses(self.resources.engine, self.settings.worker_requeue_after_s)
        if not stale:
            return
        try:
            jobs = await self.queue.jobs(parse_job_key(str(upload_id)) for upload_id in stale)
            for upload_id, job in zip(stale, jobs, strict=True):
                if job is None or job.status in (Status.COMPLETE, Status.FAILED, Status.ABORTED):
                    await enqueue_upload_parse(self.queue, str(upload_id))
                elif job.status != Status.QUEUED or not await self.queue.put_back(job):
                    continue
                RUNS_RECONCILED.labels("parse_requeued").inc()
        except REDIS_FAILURES:
            logger.warning("cannot check pending parses yet: Redis does not answer")

    async def reconcile_runs(self) -> None:
        engine = self.resources.engine
        for workflow_id, owner_id in await fail_lost_runs(engine, self.settings.worker_lost_after_s):
            RUNS_RECONCILED.labels("failed_lost").inc()
            notifier = WorkflowNotifier(self.resources.cache, self.resources.events, workflow_id, owner_id)
            await notifier.workflow_status("failed", error="the worker running this workflow stopped")
        stale = await stale_queued_runs(engine, self.settings.worker_requeue_after_s)
        if not stale:
            return
        try:
            # A long queue is the usual case here: the runs still in a lane are set aside with one read per lane,
            # rather than a record read and a search of the lane per run.
            waiting = await self.queue.waiting_ids()
            lost = [run for run in stale if self.queue.job_id(run[1]) not in waiting]
            jobs = await self.queue.jobs(job_id for _, job_id, _ in lost)
            for (workflow_id, job_id, priority), job in zip(lost, jobs, strict=True):
                await self._requeue_if_lost(workflow_id, job_id, priority, job)
        except REDIS_FAILURES:
            logger.warning("cannot check queued runs yet: Redis does not answer")

    async def _requeue_if_lost(self, workflow_id: uuid.UUID, job_id: str, priority: Priority, job: Job | None) -> None:
        """A queued run whose job Redis no longer has, holds in no lane, or holds as ended goes back into its lane.

        A job ends without ending its run when it raised before the run's first write (PostgreSQL restarting under
        its claim): SAQ records it failed while PostgreSQL still says queued. Queued again under the same key, at
        most `MAX_REQUEUES` times for a job that keeps failing (then the run fails, with the job's error); a run that
        did end meanwhile makes the job a no-op (its claim finds the run no longer queued). A job an operator aborted
        from the queue UI before it started ends its run `cancelled`, as a cancel through the API would.
        """
        if job is not None and job.status == Status.ABORTED:
            await self._end_run(workflow_id, job_id, "cancelled", ABORTED_IN_QUEUE)
            return
        if job is not None and job.status == Status.FAILED and await self._requeues(job_id) > MAX_REQUEUES:
            reason = f"its job failed {MAX_REQUEUES + 1} times before the run started: {_raised(job.error)}"
            await self._end_run(workflow_id, job_id, "failed", reason[:500])
            return
        if job is None or job.status in (Status.COMPLETE, Status.FAILED):
            await enqueue_workflow_run(self.queue, str(workflow_id), job_id, priority)
        elif job.status != Status.QUEUED or not await self.queue.put_back(job):
            # Only a job popped by a worker that died before taking it is put back: one a worker took since it was
            # read (its record active now) would run twice, the second run overwriting the first's record.
            return
        RUNS_RECONCILED.labels("requeued").inc()
        logger.info("re-queued workflow %s (run %s): Redis had lost its job", workflow_id, job_id)

    async def _requeues(self, job_id: str) -> int:
        """How many times this run's failed job has been found (a day's memory is plenty: the pass runs every few
        seconds)."""
        key = f"{self.settings.redis_namespace}:requeues:{job_id}"
        async with self.queue.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 86_400)
            count, _ = await pipe.execute()
        return int(count)

    async def _end_run(
        self, workflow_id: uuid.UUID, job_id: str, status: Literal["cancelled", "failed"], reason: str
    ) -> None:
        store = RunStore(self.resources.engine, self.resources.run_pool, workflow_id, job_id)
        owner_id = await (store.cancel(reason) if status == "cancelled" else store.fail_unstarted(reason))
        if owner_id is None:
            return
        RUNS_RECONCILED.labels(status).inc()
        notifier = WorkflowNotifier(self.resources.cache, self.resources.events, workflow_id, owner_id)
        await notifier.workflow_status(status, error=reason)


def create_worker(
    settings: Settings, drains: tuple[Priority, ...] = PRIORITIES, concurrency: int | None = None
) -> Worker[Any]:
    """A SAQ worker taking jobs from the lanes `drains`, highest first; the full worker also runs the reconciler."""
    assert settings.redis_url, "roi worker checks that REDIS_URL is set"
    queue = create_queue(settings.redis_url, settings.redis_namespace, drains)
    reconciles = drains == PRIORITIES
    concurrency_of_worker = concurrency or settings.worker_concurrency

    async def startup(ctx: dict[str, Any]) -> None:
        # The pool first: a worker stopped while it connects has nothing else to close yet.
        run_pool = await create_asyncpg_pool(settings, "roi-worker", max_size=concurrency_of_worker + 1)
        services = Services.open(settings, create_engine(settings, "roi-worker"))
        services.run_pool = run_pool
        ctx["services"] = services
        if reconciles:
            ctx["reconciler"] = asyncio.create_task(Reconciler(services).run_forever())

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "reconciler" in ctx:
            # Awaited, not just cancelled: a pass cut mid-statement must give its connection back before the engine
            # is disposed, or the connection outlives the worker idle in a transaction, holding its locks.
            ctx["reconciler"].cancel()
            await asyncio.gather(ctx["reconciler"], return_exceptions=True)
        if "services" not in ctx:
            return  # stopped during its startup, before anything was open
        services: Services = ctx["services"]
        await services.close()
        await services.engine.dispose()

    worker: Worker[Any] = Worker(
        queue,
        functions=[(RUN_WORKFLOW, run_workflow_job), (PARSE_UPLOAD, parse_upload_job), (NOOP, noop_job)],
        concurrency=concurrency or settings.worker_concurrency,
        startup=startup,
        shutdown=shutdown,
        # SAQ looks for aborted jobs every `abort` seconds, among those running at least that long: at 1 s, a job
        # aborted in the queue UI soon after it started went unseen until its second second, and a run of under
        # 2 s could finish `succeeded` after the operator's abort was accepted (seen in CI with a 1.9 s run). SAQ
        # types its timers as whole seconds; its loop sleeps for any float.
        timers=PartialTimersDict(
            schedule=1,
            worker_info=10,
            sweep=5,
            abort=ABORT_CHECK_INTERVAL_S,  # type: ignore[typeddict-item]
        ),
        # Running jobs are handed back at once on shutdown (see run_workflow_job) rather than waited for: SAQ would
        # wait the whole grace period for its never-ending upkeep tasks too.
        shutdown_grace_period_s=0,
        dequeue_timeout=1.0,
    )
    queue.worker_id = worker.id
    return worker


async def serve_worker(settings: Settings) -> None:
    """Run the workers of one process until SIGTERM or SIGINT (SAQ handles both); running jobs are handed back.

    Beside the worker with `concurrency` slots for every lane runs an express slot that takes only `high` jobs:
    a high job then starts at once even when every other slot is busy with the low ones queued before it.
    """
    workers = [create_worker(settings), create_worker(settings, drains=("high",), concurrency=EXPRESS_SLOTS)]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    for worker in workers:
        worker.SIGNALS = []  # one handler for the process, not one per worker (each would replace the last)
    running = [asyncio.create_task(worker.start()) for worker in workers]
    try:
        await asyncio.wait([*running, asyncio.create_task(stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await asyncio.gather(*(worker.stop() for worker in workers), return_exceptions=True)
        await asyncio.gather(*running, return_exceptions=True)
        for worker in workers:
            await worker.queue.disconnect()
