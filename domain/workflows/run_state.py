"""The state machine of a run, as conditional writes: each one holds only while the run is still current.

Every write names the run (`job_id`) and requires the workflow to be `running` under it, in one transaction
that locks the workflow row. A cancel, a delete or a newer run takes that lock too, so once it commits,
nothing of the older run can be written any more: no progress after a cancel, no result after a delete.

The run's first write claims it: it requires the workflow still `queued` under the run, and moves it on (to
`running`, or straight to how it ended when the run was over by then). Until then the run has only read.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import StepStatusName, Workflow, WorkflowStatusName, WorkflowStep
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


_INPUTS = """
SELECT owner_id, parameters::text AS parameters, cash_flows, upload_id,
    (SELECT array_agg(kind ORDER BY position) FROM workflow_steps WHERE workflow_id = roi_workflows.id) AS kinds
FROM roi_workflows WHERE id = $1 AND job_id = $2 AND status = 'queued'
"""
_ENDED_AS = """
SELECT true FROM roi_workflows WHERE id = $1 AND job_id = $2 AND status = $3 AND finished_at = $4"""
_RUN_COLUMNS = frozenset({"status", "progress", "current_step", "started_at", "finished_at", "error"})
"""The workflow's columns a run's `commit` may set (the statement names them, so only these)."""
_STEP_CHANGES = """
UPDATE workflow_steps s
SET status = v.status, progress = v.progress, started_at = v.started_at, finished_at = v.finished_at,
    error = v.error, updated_at = $3
FROM unnest(${0}::integer[], ${1}::varchar[], ${2}::float8[], ${3}::timestamptz[], ${4}::timestamptz[], ${5}::text[])
    AS v(position, status, progress, started_at, finished_at, error)
WHERE s.workflow_id = (SELECT id FROM touched) AND s.position = v.position"""
"""Every changed step of a run in one statement, so the trigger that refreshes the workflow's document runs once."""
_SKIP_AFTER = """
UPDATE workflow_steps SET status = 'skipped', updated_at = $3
WHERE workflow_id = (SELECT id FROM touched) AND position > ${0}"""
_STORE_RESULT = """
INSERT INTO workflow_results (workflow_id, job_id, finished_at, metrics, simulation)
SELECT id, $2, ${0}::timestamptz, ${1}::jsonb, ${2}::jsonb FROM touched
ON CONFLICT (workflow_id) DO UPDATE
SET job_id = EXCLUDED.job_id, finished_at = EXCLUDED.finished_at, metrics = EXCLUDED.metrics,
    simulation = EXCLUDED.simulation"""
"""A rerun that succeeds replaces the earlier result."""


@functools.cache
def commit_statement(
    names: tuple[str, ...], steps: bool, skip: bool, result: bool, current: tuple[WorkflowStatusName, ...]
) -> str:
    """One statement for a `RunStore.commit`: the workflow's touch first (while its status is one of `current`),
    every other write only if it matched.

    Parameters: $1 workflow, $2 run, $3 now, then the values of `names`, then, each when asked for, the steps' six
    arrays, the position after which steps are skipped, the result's finish time, metrics and simulation."""
    assert set(names) <= _RUN_COLUMNS, f"not a column a run writes: {set(names) - _RUN_COLUMNS}"
    number = itertools.count(4)
    assignments = "".join(f", {name} = ${next(number)}" for name in names)
    if steps:
        # The steps' trigger builds the document once they are written (migration 0008); while none of the positions
        # exists, SQL NULL builds it here.
        positions = len(names) + 4
        assignments += (
            ", doc = CASE WHEN EXISTS (SELECT 1 FROM workflow_steps WHERE workflow_id = $1 "
            f"AND position = ANY(${positions}::integer[])) THEN 'null'::json END"
        )
    statuses = ", ".join(f"'{status}'" for status in current)
    parts = [
        f"touched AS (UPDATE roi_workflows SET updated_at = $3, heartbeat_at = $3{assignments} "
        f"WHERE id = $1 AND job_id = $2 AND status IN ({statuses}) RETURNING id)"
    ]
    for wanted, name, sql, count in (
        (steps, "steps", _STEP_CHANGES, 6),
        (skip, "skipped", _SKIP_AFTER, 1),
        (result, "result", _STORE_RESULT, 3),
    ):
        if wanted:
            parts.append(f"{name} AS ({sql.format(*(next(number) for _ in range(count)))})")
    return "WITH " + ",\n".join(parts) + "\nSELECT count(*) FROM touched"


@dataclass(frozen=True)
class RunInputs:
    """What a run reads of its workflow. None of it changes once the workflow exists (a PATCH changes only its name,
    description and priority), so a run's job may carry it, read when the run was queued."""

    owner_id: uuid.UUID
    parameters: dict[str, Any]
    cash_flows: list[float] | None
    upload_id: uuid.UUID | None
    steps: list[str]

    @classmethod
    def read(cls, owner_id: uuid.UUID, row: asyncpg.Record) -> RunInputs:
        """From a row of `parameters` (as JSON text), `cash_flows`, `upload_id` and the steps' `kinds`."""
        parameters = msgspec.json.decode(row["parameters"])
        return cls(owner_id, parameters, row["cash_flows"], row["upload_id"], list(row["kinds"] or []))

    def as_job_argument(self) -> dict[str, Any]:
        """As a job's keyword argument: JSON, and exact (Python's JSON writes every float to its last digit)."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    @classmethod
    def from_job_argument(cls, carried: dict[str, Any]) -> RunInputs:
        return msgspec.convert(carried, cls)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class RunStore:
    def __init__(self, engine: AsyncEngine, pool: asyncpg.Pool, workflow_id: uuid.UUID, job_id: str) -> None:
        """`pool` for the run's own writes (claim, commit); `engine` for the rare ones (release, cancel, beats)."""
        self.engine = engine
        self.pool = pool
        self.workflow_id = workflow_id
        self.job_id = job_id

    def _current(self, *statuses: WorkflowStatusName) -> Any:
        return (Workflow.id == self.workflow_id) & (Workflow.job_id == self.job_id) & Workflow.status.in_(statuses)

    async def inputs(self) -> RunInputs:
        """What the run needs, read while it is still queued; its first `commit` claims it. Raises RunNotCurrent when
        the run was cancelled, deleted or replaced before it started."""
        row = await self.pool.fetchrow(_INPUTS, self.workflow_id, self.job_id)
        if row is None:
            raise RunNotCurrent
        return RunInputs.read(row["owner_id"], row)

    async def commit(
        self,
        workflow: dict[str, Any],
        steps: dict[int, StepChange],
        *,
        skip_after: int | None = None,
        result: dict[str, Any] | None = None,
        current: tuple[WorkflowStatusName, ...] = ("running",),
    ) -> None:
        """Several changes of the run in one transaction: the workflow's `workflow` values, the steps' `steps` (one
        statement for all), later steps `skipped` after `skip_after`, the result. Raises RunNotCurrent (writing
        nothing) once the run is no longer current: its workflow's status not one of `current` under this run
        (`queued` for the write that claims it).

        One statement on the asyncpg pool, not the ORM: this is every run's hot path, and the engine's checkout alone
        (its pre-ping) is three round trips; a transaction of several statements, six."""
        now = _now()
        names = tuple(sorted(workflow))
        arguments: list[Any] = [self.workflow_id, self.job_id, now, *(workflow[name] for name in names)]
        if steps:
            changes = sorted(steps.items())
            arguments += [
                [position for position, _ in changes],
                [change.status for _, change in changes],
                [change.progress for _, change in changes],
                [change.started_at for _, change in changes],
                [change.finished_at for _, change in changes],
                [change.error for _, change in changes],
            ]
        if skip_after is not None:
            arguments.append(skip_after)
        if result is not None:
            simulation = result.get("simulation")
            arguments += [
                workflow.get("finished_at", now),
                msgspec.json.encode(result["metrics"]).decode(),
                None if simulation is None else msgspec.json.encode(simulation).decode(),
            ]
        statement = commit_statement(names, bool(steps), skip_after is not None, result is not None, current)
        if not await self.pool.fetchval(statement, *arguments):
            raise RunNotCurrent

    async def ended_as(self, status: WorkflowStatusName, finished_at: datetime.datetime) -> bool:
        """Whether this run ended `status` at `finished_at` (to the microsecond): whether a write of its end
        committed."""
        ended = await self.pool.fetchval(_ENDED_AS, self.workflow_id, self.job_id, status, finished_at)
        return bool(ended)

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
        """queued or running → cancelled (an operator aborted the job): the running step `cancelled`, later ones
        `skipped`. The owner's id, or None when the run was no longer current (already ended, deleted or replaced)."""
        return await self._end("cancelled", reason)

    async def fail_unstarted(self, reason: str) -> uuid.UUID | None:
        """queued → failed: its job kept failing before it could claim the run. The owner's id, or None."""
        return await self._end("failed", reason, "queued")

    async def _end(self, status: WorkflowStatusName, reason: str, *current: WorkflowStatusName) -> uuid.UUID | None:
        now = _now()
        async with self.engine.begin() as conn:
            owner_id: uuid.UUID | None = await conn.scalar(
                update(Workflow)
                .where(self._current(*(current or ("queued", "running"))))
                .values(status=status, error=reason, finished_at=now, updated_at=now, current_step=None)
                .returning(Workflow.owner_id)
            )
            if owner_id is not None:
                for before, after in (("running", status), ("pending", "skipped")):
                    await conn.execute(
                        update(WorkflowStep)
                        .where(WorkflowStep.workflow_id == self.workflow_id, WorkflowStep.status == before)
                        .values(status=after, updated_at=now, finished_at=now if after == status else None)
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
