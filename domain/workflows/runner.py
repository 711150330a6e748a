"""One run of a workflow: each planned step executed by its agent, every change persisted, cached and published.

The state of record is PostgreSQL (see `run_state.RunStore`); after each committed change the runner drops the
workflow's cache keys and publishes the matching event, the same way the API's writes do.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.agents.steps import STEP_EXECUTORS, RunState, StepFailed
from domain.cache import Cache
from domain.events.bus import EventBus
from domain.uploads.processing import upload_cash_flows
from domain.workflows.notifier import WorkflowNotifier
from domain.workflows.run_state import ClaimedRun, RunNotCurrent, RunStore

logger = logging.getLogger("roi.runner")

PROGRESS_INTERVAL_S = 0.2
HEARTBEAT_INTERVAL_S = 2.0


class RunResources(Protocol):
    """What a run needs of its process's services."""

    engine: AsyncEngine
    cache: Cache
    events: EventBus


class ProgressWriter:
    """Persists a step's progress at most every PROGRESS_INTERVAL_S; raises RunNotCurrent once cancelled."""

    def __init__(self, store: RunStore, notifier: WorkflowNotifier, position: int, kind: str, steps: int) -> None:
        self.store = store
        self.notifier = notifier
        self.position = position
        self.kind = kind
        self.steps = steps
        self.last_write = time.monotonic()

    async def __call__(self, step_progress: float) -> None:
        if time.monotonic() - self.last_write < PROGRESS_INTERVAL_S:
            return
        workflow_progress = (self.position + step_progress) / self.steps
        await self.store.report_progress(self.position, step_progress, workflow_progress)
        self.last_write = time.monotonic()
        await self.notifier.progress(self.kind, step_progress, workflow_progress)


async def run_workflow(
    resources: RunResources, workflow_id: uuid.UUID, job_id: str, touch_job: Callable[[], Awaitable[Any]]
) -> str:
    """Execute the run `job_id` of a workflow; returns how it ended. Never raises for the run's own failures."""
    store = RunStore(resources.engine, workflow_id, job_id)
    try:
        run = await store.claim()
    except RunNotCurrent:
        return "not current"
    notifier = WorkflowNotifier(resources.cache, resources.events, workflow_id, run.owner_id)
    await notifier.workflow_status("running", progress=0.0)
    beating = asyncio.create_task(_beat(store, touch_job))
    try:
        return await _execute(store, notifier, run)
    except RunNotCurrent:
        return "cancelled"
    finally:
        beating.cancel()


async def _execute(store: RunStore, notifier: WorkflowNotifier, run: ClaimedRun) -> str:
    parameters = run.parameters
    state = RunState(
        raw_cash_flows=run.cash_flows,
        discount_rate=float(parameters["discount_rate"]),
        simulations=int(parameters.get("simulations", 0)),
        volatility=float(parameters.get("volatility", 0.0)),
        seed=parameters.get("seed"),
        progress=_no_progress,
        load_upload=partial(upload_cash_flows, store.engine, run.upload_id, run.owner_id) if run.upload_id else None,
    )
    steps = len(run.steps)
    for position, kind in enumerate(run.steps):
        await store.start_step(position, kind, position / steps)
        await notifier.step_status(position, kind, "running")
        state.progress = ProgressWriter(store, notifier, position, kind, steps)
        try:
            await STEP_EXECUTORS[kind](state)
        except (StepFailed, ValueError) as error:
            message = str(error) if isinstance(error, StepFailed) else f"{kind}: {error}"
            await _fail(store, notifier, position, kind, message)
            return "failed"
        except RunNotCurrent:
            raise
        except Exception as error:
            logger.exception("step %s of workflow %s failed unexpectedly", kind, store.workflow_id)
            await _fail(store, notifier, position, kind, f"{kind}: internal error ({type(error).__name__})")
            return "failed"
        await store.finish_step(position, (position + 1) / steps)
        await notifier.step_status(position, kind, "succeeded")
    await store.succeed(state.result)
    await notifier.workflow_status("succeeded", progress=1.0)
    return "succeeded"


async def _fail(store: RunStore, notifier: WorkflowNotifier, position: int, kind: str, message: str) -> None:
    await store.fail(position, message)
    await notifier.step_status(position, kind, "failed", message)
    await notifier.workflow_status("failed", error=message)


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
