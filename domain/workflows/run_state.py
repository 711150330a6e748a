"""The state machine of a run, as conditional writes: each one holds only while the run is still current.

Every write names the run (`job_id`) and requires the workflow to be `running` under it, in one transaction
that locks the workflow row. A cancel, a delete or a newer run takes that lock too, so once it commits,
nothing of the older run can be written any more: no progress after a cancel, no result after a delete.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.models import Workflow, WorkflowResult, WorkflowStatusName, WorkflowStep
from infra.jobs import Priority


class RunNotCurrent(Exception):
    """The run was cancelled, deleted or replaced: stop without writing anything."""


@dataclass(frozen=True)
class ClaimedRun:
    owner_id: uuid.UUID
    parameters: dict[str, Any]
    cash_flows: list[float] | None
    upload_id: uuid.UUID | None
    steps: list[str]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class RunStore:
    def __init__(self, engine: AsyncEngine, workflow_id: uuid.UUID, job_id: str) -> None:
        self.engine = engine
        self.workflow_id = workflow_id
        self.job_id = job_id

    def _current(self, *statuses: WorkflowStatusName) -> Any:
        return (Workflow.id == self.workflow_id) & (Workflow.job_id == self.job_id) & Workflow.status.in_(statuses)

    async def claim(self) -> ClaimedRun:
        """queued → running. Raises RunNotCurrent when the run was cancelled before it started."""
        now = _now()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    update(Workflow)
                    .where(self._current("queued"))
                    .values(status="running", started_at=now, heartbeat_at=now, updated_at=now, progress=0.0)
                    .returning(Workflow.owner_id, Workflow.parameters, Workflow.cash_flows, Workflow.upload_id)
                )
            ).one_or_none()
            if row is None:
                raise RunNotCurrent
            steps = (
                await conn.scalars(
                    select(WorkflowStep.kind)
                    .where(WorkflowStep.workflow_id == self.workflow_id)
                    .order_by(WorkflowStep.position)
                )
            ).all()
        return ClaimedRun(row.owner_id, row.parameters, row.cash_flows, row.upload_id, list(steps))

    async def _touch(self, conn: AsyncConnection, **values: Any) -> None:
        now = _now()
        owner = await conn.scalar(
            update(Workflow)
            .where(self._current("running"))
            .values(updated_at=now, heartbeat_at=now, **values)
            .returning(Workflow.owner_id)
        )
        if owner is None:
            raise RunNotCurrent

    async def _step(self, conn: AsyncConnection, position: int, **values: Any) -> None:
        await conn.execute(
            update(WorkflowStep)
            .where(WorkflowStep.workflow_id == self.workflow_id, WorkflowStep.position == position)
            .values(updated_at=_now(), **values)
        )

    async def start_step(self, position: int, kind: str, workflow_progress: float) -> None:
        async with self.engine.begin() as conn:
            await self._touch(conn, current_step=kind, progress=workflow_progress)
            await self._step(conn, position, status="running", started_at=_now(), progress=0.0)

    async def report_progress(self, position: int, step_progress: float, workflow_progress: float) -> None:
        async with self.engine.begin() as conn:
            await self._touch(conn, progress=workflow_progress)
            await self._step(conn, position, progress=step_progress)

    async def heartbeat(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(Workflow).where(self._current("running")).values(heartbeat_at=_now()))

    async def finish_step(self, position: int, workflow_progress: float) -> None:
        async with self.engine.begin() as conn:
            await self._touch(conn, progress=workflow_progress)
            await self._step(conn, position, status="succeeded", progress=1.0, finished_at=_now())

    async def fail(self, position: int, error: str) -> None:
        """The step failed: it and the workflow end `failed` with `error`; later steps are `skipped`."""
        async with self.engine.begin() as conn:
            await self._touch(conn, status="failed", error=error, finished_at=_now(), current_step=None)
            await self._step(conn, position, status="failed", error=error, finished_at=_now())
            await conn.execute(
                update(WorkflowStep)
                .where(WorkflowStep.workflow_id == self.workflow_id, WorkflowStep.position > position)
                .values(status="skipped", updated_at=_now())
            )

    async def release(self) -> bool:
        """running → queued again under the same run, when its worker shuts down: the next worker restarts it."""
        async with self.engine.begin() as conn:
            released = await conn.scalar(
                update(Workflow)
                .where(self._current("running"))
                .values(status="queued", current_step=None, progress=0.0, updated_at=_now(), heartbeat_at=None)
                .returning(Workflow.id)
            )
            if released is not None:
                await conn.execute(
                    update(WorkflowStep)
                    .where(WorkflowStep.workflow_id == self.workflow_id)
                    .values(status="pending", progress=0.0, started_at=None, finished_at=None, updated_at=_now())
                )
        return released is not None

    async def cancel(self, reason: str) -> uuid.UUID | None:
        """running → cancelled (an operator aborted the job): the running step `cancelled`, later ones `skipped`.
        The owner's id, or None when the run was no longer current (already cancelled, deleted or replaced)."""
        now = _now()
        async with self.engine.begin() as conn:
            owner_id: uuid.UUID | None = await conn.scalar(
                update(Workflow)
                .where(self._current("running"))
                .values(status="cancelled", error=reason, finished_at=now, updated_at=now, current_step=None)
                .returning(Workflow.owner_id)
            )
            if owner_id is not None:
                for before, after in (("running", "cancelled"), ("pending", "skipped")):
                    await conn.execute(
                        update(WorkflowStep)
                        .where(WorkflowStep.workflow_id == self.workflow_id, WorkflowStep.status == before)
                        .values(status=after, updated_at=now, finished_at=now if after == "cancelled" else None)
                    )
        return owner_id

    async def succeed(self, result: dict[str, Any]) -> None:
        """running → succeeded, storing the result (replacing an earlier run's) in the same transaction."""
        now = _now()
        async with self.engine.begin() as conn:
            await self._touch(conn, status="succeeded", progress=1.0, finished_at=now, current_step=None)
            values = {"job_id": self.job_id, "finished_at": now, **result}
            await conn.execute(
                insert(WorkflowResult)
                .values(workflow_id=self.workflow_id, **values)
                .on_conflict_do_update(index_elements=[WorkflowResult.workflow_id], set_=values)
            )


async def fail_lost_runs(engine: AsyncEngine, lost_after_s: float) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Runs whose worker stopped beating end `failed`, naming the step they were in; (workflow, owner) ids."""
    now = _now()
    cutoff = now - datetime.timedelta(seconds=lost_after_s)
    async with engine.begin() as conn:
        lost = (
            await conn.execute(
                select(Workflow.id, Workflow.owner_id, Workflow.current_step)
                .where(Workflow.status == "running", Workflow.heartbeat_at < cutoff)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for workflow_id, _, step in lost:
            error = (
                f"{step or 'run'}: the worker running this workflow stopped (no heartbeat for "
                f"{lost_after_s:g} s); run it again"
            )
            await conn.execute(
                update(Workflow)
                .where(Workflow.id == workflow_id)
                .values(status="failed", error=error, finished_at=now, updated_at=now, current_step=None)
            )
            await conn.execute(
                update(WorkflowStep)
                .where(WorkflowStep.workflow_id == workflow_id, WorkflowStep.status == "running")
                .values(status="failed", error=error, finished_at=now, updated_at=now)
            )
            await conn.execute(
                update(WorkflowStep)
                .where(WorkflowStep.workflow_id == workflow_id, WorkflowStep.status == "pending")
                .values(status="skipped", updated_at=now)
            )
    return [(workflow_id, owner_id) for workflow_id, owner_id, _ in lost]


async def stale_queued_runs(engine: AsyncEngine, older_than_s: float) -> list[tuple[uuid.UUID, str, Priority]]:
    """Queued runs older than `older_than_s`: (workflow id, job id, priority), for re-enqueueing lost jobs."""
    cutoff = _now() - datetime.timedelta(seconds=older_than_s)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(Workflow.id, Workflow.job_id, Workflow.priority).where(
                    Workflow.status == "queued", Workflow.queued_at < cutoff, Workflow.job_id.is_not(None)
                )
            )
        ).all()
    return [(row.id, row.job_id, row.priority) for row in rows]
