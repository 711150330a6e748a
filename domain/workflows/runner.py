"""One run of a workflow: each planned step executed by its agent, every change persisted, cached and published.

The state of record is PostgreSQL (see `run_state.RunStore`); after each committed change the runner drops the
workflow's cache keys and publishes the matching event, the same way the API's writes do.

A run reads its inputs and starts; `queued → running` is its first write, made with its first changes (FOLD_S at
the latest). A run over sooner (most are) thus writes once and publishes once, `running` and its end together; a
longer one is `running` in PostgreSQL, and for its subscribers, within FOLD_S of its start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import WorkflowStatusName
from db.pools import is_lost_connection
from domain.agents.steps import STEP_EXECUTORS, RunState, StepFailed
from domain.cache import Cache
from domain.events.bus import Event, EventBus
from domain.uploads.processing import upload_cash_flows
from domain.workflows.notifier import WorkflowNotifier
from domain.workflows.run_state import RunInputs, RunNotCurrent, RunStore, StepChange
from infra.closing import raise_if_cancelled

logger = logging.getLogger("roi.runner")

PROGRESS_INTERVAL_S = 0.2
HEARTBEAT_INTERVAL_S = 2.0
FOLD_S = 0.05
"""How long a run's changes may wait to be written together: a run done sooner writes them in one transaction and
one batch of events; a longer one is seen at most this late (and its progress still every PROGRESS_INTERVAL_S)."""
RETRY_WRITE_AFTER_S = 0.5
"""A run's write that lost its connection is tried once more after this pause (a restarting PostgreSQL, a backend
terminated): one such fault costs the run this long, not the run itself."""
INLINE_FLOWS = 50
"""Series up to this length are analysed on the loop: cheaper than a hop to a thread, and over in microseconds."""


class RunResources(Protocol):
    """What a run needs of its process's services."""

    engine: AsyncEngine
    run_pool: asyncpg.Pool
    cache: Cache
    events: EventBus


class RunJournal:
    """The run's changes on their way to PostgreSQL and the subscribers, folded into as few writes as is honest.

    Changes collect here; `flush` writes them in one conditional transaction (nothing once the run is no longer
    current; the first one claims the run, still queued) and then publishes their events in one round trip. A change
    is flushed at the latest FOLD_S after it was made (a timer), at once for progress (already paced) and for the
    run's end. A write that lost its connection is tried once more before its error reaches the run (a timed flush's
    error is raised by the run's next write).
    """

    def __init__(self, store: RunStore, notifier: WorkflowNotifier) -> None:
        self.store = store
        self.notifier = notifier
        self.workflow: dict[str, Any] = {}
        self.steps: dict[int, StepChange] = {}
        """What the run knows of each step it reached; `changed` are those not yet written."""
        self.changed: set[int] = set()
        self.events: list[Event] = []
        self.claimed = False
        """Whether a write moved the run on from `queued` (its first write does)."""
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timed: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    def step(self, position: int) -> StepChange:
        """The step at `position`, to change: it will be written with the next flush."""
        self.changed.add(position)
        return self.steps.setdefault(position, StepChange("running", 0.0, None))

    def record(self, events: list[Event], **workflow: Any) -> None:
        """Note a change of the workflow and its events (after changing steps through `step`); written within FOLD_S."""
        if self._failure is not None:
            raise self._failure
        self.workflow.update(workflow)
        self.events += events
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FOLD_S, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        self._timed = asyncio.get_running_loop().create_task(self._timed_flush())

    async def _timed_flush(self) -> None:
        try:
            await self.flush()
        except Exception as error:  # noqa: BLE001 - kept for the run: its next write raises it
            self._failure = error

    async def flush(self, *, skip_after: int | None = None, result: dict[str, Any] | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            if self._failure is not None:
                raise self._failure
            workflow, events = self.workflow, self.events
            steps = {position: dataclasses.replace(self.steps[position]) for position in self.changed}
            if not (workflow or steps or events or result is not None):
                return
            self.workflow, self.changed, self.events = {}, set(), []
            await self._commit(workflow, steps, skip_after, result)
            await self.notifier.announce(events)

    async def _commit(
        self,
        workflow: dict[str, Any],
        steps: dict[int, StepChange],
        skip_after: int | None,
        result: dict[str, Any] | None,
    ) -> None:
        current: tuple[WorkflowStatusName, ...] = ("running",) if self.claimed else ("queued",)
        try:
            await self.store.commit(workflow, steps, skip_after=skip_after, result=result, current=current)
        except Exception as error:
            if not is_lost_connection(error):
                raise
            logger.warning(
                "a write of workflow %s lost its connection (%r); trying once more", self.store.workflow_id, error
            )
            # The pool's other connections may have been cut too (a restart): replaced as they are next drawn.
            await self.store.pool.expire_connections()
            await asyncio.sleep(RETRY_WRITE_AFTER_S)
            # A claim whose first attempt committed left the run `running` under this run: the same write holds.
            again: tuple[WorkflowStatusName, ...] = ("running",) if self.claimed else ("queued", "running")
            try:
                await self.store.commit(workflow, steps, skip_after=skip_after, result=result, current=again)
            except RunNotCurrent:
                if "finished_at" in workflow and await self.store.ended_as(workflow["status"], workflow["finished_at"]):
                    # The first attempt committed the run's end before its answer was lost: it is written, so its
                    # events go out as any write's do (subscribers would otherwise wait for an end they never see).
                    self.claimed = True
                    return
                # Some other state (a cancel meanwhile): whichever it is, the cache must not keep showing the earlier.
                await self.notifier.changed()
                raise
        self.claimed = True

    async def close(self) -> None:
        """Stop the timer and wait for a flush it started: the run's connection is back before anyone else writes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timed is not None and not self._timed.done():
            self._timed.cancel()
            await asyncio.gather(self._timed, return_exceptions=True)


class ProgressWriter:
    """Persists a step's progress at most every PROGRESS_INTERVAL_S; raises RunNotCurrent once the run is cancelled in
    PostgreSQL, CancelledError once its task was (an abort), even if an await since lost that cancellation."""

    def __init__(self, journal: RunJournal, position: int, kind: str, steps: int) -> None:
        self.journal = journal
        self.position = position
        self.kind = kind
        self.steps = steps
        self.last_write = time.monotonic()

    async def __call__(self, step_progress: float) -> None:
        raise_if_cancelled()
        if time.monotonic() - self.last_write < PROGRESS_INTERVAL_S:
            return
        workflow_progress = (self.position + step_progress) / self.steps
        self.journal.step(self.position).progress = step_progress
        event = self.journal.notifier.progress_event(self.kind, step_progress, workflow_progress)
        self.journal.record([event], progress=workflow_progress)
        await self.journal.flush()
        # The flush's Redis round trip can swallow a cancellation (an operator's abort): the run must stop here
        # anyway, not run on and end `succeeded` after the abort was accepted.
        raise_if_cancelled()
        self.last_write = time.monotonic()


async def run_workflow(
    resources: RunResources,
    workflow_id: uuid.UUID,
    job_id: str,
    touch_job: Callable[[], Awaitable[Any]],
    inputs: RunInputs | None = None,
) -> str:
    """Execute the run `job_id` of a workflow, on `inputs` when its job carried them; returns how it ended. Never raises
    for the run's own failures."""
    store = RunStore(resources.engine, resources.run_pool, workflow_id, job_id)
    try:
        # Carried inputs are read without checking that the run is still queued: its first write checks that.
        run = inputs or await store.inputs()
    except RunNotCurrent:
        return "not current"
    notifier = WorkflowNotifier(resources.cache, resources.events, workflow_id, run.owner_id)
    journal = RunJournal(store, notifier)
    journal.record(
        notifier.workflow_status_events("running", progress=0.0), status="running", started_at=_now(), progress=0.0
    )
    beating = asyncio.create_task(_beat(store, touch_job))
    try:
        return await _execute(journal, run)
    except RunNotCurrent:
        return "cancelled"
    finally:
        beating.cancel()
        await journal.close()


async def _execute(journal: RunJournal, run: RunInputs) -> str:
    store, notifier = journal.store, journal.notifier
    parameters = run.parameters
    state = RunState(
        raw_cash_flows=run.cash_flows,
        discount_rate=float(parameters["discount_rate"]),
        simulations=int(parameters.get("simulations", 0)),
        volatility=float(parameters.get("volatility", 0.0)),
        seed=parameters.get("seed"),
        progress=_no_progress,
        load_upload=partial(upload_cash_flows, store.engine, run.upload_id, run.owner_id) if run.upload_id else None,
        inline_size=INLINE_FLOWS,
    )
    steps = len(run.steps)
    for position, kind in enumerate(run.steps):
        journal.step(position).started_at = _now()
        journal.record(
            [notifier.step_status_event(position, kind, "running")], current_step=kind, progress=position / steps
        )
        state.progress = ProgressWriter(journal, position, kind, steps)
        try:
            await STEP_EXECUTORS[kind](state)
        except (StepFailed, ValueError) as error:
            message = str(error) if isinstance(error, StepFailed) else f"{kind}: {error}"
            await _fail(journal, position, kind, message)
            return "failed"
        except RunNotCurrent:
            raise
        except Exception as error:
            logger.exception("step %s of workflow %s failed unexpectedly", kind, store.workflow_id)
            await _fail(journal, position, kind, f"{kind}: internal error ({type(error).__name__})")
            return "failed"
        step = journal.step(position)
        step.status, step.progress, step.finished_at = "succeeded", 1.0, _now()
        journal.record([notifier.step_status_event(position, kind, "succeeded")], progress=(position + 1) / steps)
    journal.record(
        notifier.workflow_status_events("succeeded", progress=1.0),
        status="succeeded",
        progress=1.0,
        finished_at=_now(),
        current_step=None,
    )
    raise_if_cancelled()
    await journal.flush(result=state.result)
    return "succeeded"


async def _fail(journal: RunJournal, position: int, kind: str, message: str) -> None:
    now = _now()
    step = journal.step(position)
    step.status, step.error, step.finished_at = "failed", message, now
    events = [
        journal.notifier.step_status_event(position, kind, "failed", message),
        *journal.notifier.workflow_status_events("failed", error=message),
    ]
    journal.record(events, status="failed", error=message, finished_at=now, current_step=None)
    await journal.flush(skip_after=position)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _no_progress(_: float) -> None:
    """Placeholder until the first step starts."""


async def _beat(store: RunStore, touch_job: Callable[[], Awaitable[Any]]) -> None:
    """Keep the run's heartbeat fresh in PostgreSQL and SAQ while the steps work (the loop stays free)."""
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)
        try:
            await store.heartbeat()
            await touch_job()
        except Exception:
            logger.warning("heartbeat of workflow %s failed", store.workflow_id, exc_info=True)
