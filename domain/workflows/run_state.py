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

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.models import StepStatusName, Workflow, WorkflowResult, WorkflowStatusName, WorkflowStep
from infra.jobs import Priority


class RunNotCurrent(Exception):
    """The run was cancelled, deleted or replaced: stop without writing anything."""


@dataclass
class StepChange:
    """A step's columns as the run knows them now: written as a whole, however many changes it went through."""

    status: StepStatusName
    progress: float
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None = None
    error: str | None = None


_STEP_CHANGES = text(
    """
UPDATE workflow_steps s
SET status = v.status, progress = v.progress, started_at = v.started_at, finished_at = v.finished_at,
    error = v.error, updated_at = :now
FROM unnest(
    CAST(:positions AS integer[]), CAST(:statuses AS varchar[]), CAST(:progresses AS float8[]),
    CAST(:started AS timestamptz[]), CAST(:finished AS timestamptz[]), CAST(:errors AS text[])
) AS v(position, status, progress, started_at, finished_at, error)
WHERE s.workflow_id = :workflow_id AND s.position = v.position
"""
)
"""Every changed step of a run in one statement, so the trigger that refreshes the workflow's document runs once."""


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
        """queued → running, reading what the run needs in the same statement. Raises RunNotCurrent when the run was
        cancelled before it started."""
        now = _now()
        kinds = (
            select(func.array_agg(aggregate_order_by(WorkflowStep.kind, WorkflowStep.position)))
            .where(WorkflowStep.workflow_id == Workflow.id)
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    update(Workflow)
                    .where(self._current("queued"))
                    .values(status="running", started_at=now, heartbeat_at=now, updated_at=now, progress=0.0)
                    .returning(Workflow.owner_id, Workflow.parameters, Workflow.cash_flows, Workflow.upload_id, kinds)
                )
            ).one_or_none()
            if row is None:
                raise RunNotCurrent
        return ClaimedRun(row[0], row[1], row[2], row[3], list(row[4] or []))

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

    async def commit(
        self,
        workflow: dict[str, Any],
        steps: dict[int, StepChange],
        *,
        skip_after: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Several changes of the run in one transaction: the workflow's `workflow` values, the steps' `steps` (one
        statement for all), later steps `skipped` after `skip_after`, the result. Raises RunNotCurrent (writing
        nothing) once the run is no longer current."""
        now = _now()
        async with self.engine.begin() as conn:
            await self._touch(conn, **workflow)
            if steps:
                changes = sorted(steps.items())
                await conn.execute(
                    _STEP_CHANGES,
                    {
                        "workflow_id": self.workflow_id,
                        "now": now,
                        "positions": [position for position, _ in changes],
                        "statuses": [change.status for _, change in changes],
                        "progresses": [change.progress for _, change in changes],
                        "started": [change.started_at for _, change in changes],
                        "finished": [change.finished_at for _, change in changes],
                        "errors": [change.error for _, change in changes],
                    },
                )
            if skip_after is not None:
                await conn.execute(
                    update(WorkflowStep)
                    .where(WorkflowStep.workflow_id == self.workflow_id, WorkflowStep.position > skip_after)
                    .values(status="skipped", updated_at=now)
                )
            if result is not None:
                values = {"job_id": self.job_id, "finished_at": workflow.get("finished_at", now), **result}
                await conn.execute(
                    insert(WorkflowResult)
                    .values(workflow_id=self.workflow_id, **values)
                    .on_conflict_do_update(index_elements=[WorkflowResult.workflow_id], set_=values)
                )

    async def heartbeat(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(Workflow).where(self._current("running")).values(heartbeat_at=_now()))

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
