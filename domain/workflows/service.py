"""Workflow rules: validation beyond the schema, planning steps, ownership, and the hot reads."""

from __future__ import annotations

import datetime
import logging
import uuid
from functools import partial

import asyncpg
import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Upload, Workflow, WorkflowStatusName, WorkflowStep
from domain.cache import Cache
from domain.errors import ConflictError, InvalidInput, NotFound
from domain.events.bus import EventBus
from domain.pagination import CursorSigner, Position, check_page_request, render_page
from domain.workflows import queries
from domain.workflows.cache_keys import WorkflowCacheKeys
from domain.workflows.notifier import WorkflowNotifier
from domain.workflows.schemas import (
    MAX_SIMULATED_VALUES,
    Parameters,
    RunAccepted,
    WorkflowCreate,
    WorkflowPatch,
)
from infra.queue import PriorityRedisQueue
from infra.redis import REDIS_FAILURES

logger = logging.getLogger("roi.workflows")

ACTIVE_STATUSES: tuple[WorkflowStatusName, ...] = ("queued", "running")
STEP_KINDS_WITHOUT_SIMULATION = ("ingest", "validate", "analyze", "report")
STEP_KINDS_WITH_SIMULATION = ("ingest", "validate", "analyze", "simulate", "report")


def planned_steps(parameters: Parameters) -> tuple[str, ...]:
    """The steps a run executes, in order; `simulate` only when simulations were asked for."""
    return STEP_KINDS_WITH_SIMULATION if parameters.simulations > 0 else STEP_KINDS_WITHOUT_SIMULATION


def check_cash_flow_source(data: WorkflowCreate) -> None:
    """The rules that span fields, each failure naming the field to fix."""
    if data.cash_flows is not None and data.upload_id is not None:
        raise InvalidInput("cash_flows and upload_id: give one of them, not both")
    if data.cash_flows is None and data.upload_id is None:
        raise InvalidInput("cash_flows: give the cash flows inline, or an upload_id of a ready upload")
    if data.cash_flows is not None and data.parameters.simulations * len(data.cash_flows) > MAX_SIMULATED_VALUES:
        raise InvalidInput(
            f"parameters.simulations: simulations x cash flows must be at most {MAX_SIMULATED_VALUES:,}"
            f" ({data.parameters.simulations:,} x {len(data.cash_flows):,} given)"
        )


OWNER_PREFIX_LENGTH = 32


class WorkflowReader:
    """The hot reads: one statement each on the raw pool, PostgreSQL renders the JSON; status and pages cached."""

    def __init__(self, asyncpg_pool: asyncpg.Pool, cache: Cache, cursors: CursorSigner) -> None:
        self.asyncpg_pool = asyncpg_pool
        self.cache = cache
        self.cursors = cursors
        self.keys = WorkflowCacheKeys(cache)

    async def detail_json(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> bytes:
        body: bytes | None = await self.asyncpg_pool.fetchval(queries.WORKFLOW_DETAIL, workflow_id, owner_id)
        if body is None:
            raise NotFound("no workflow with this id")
        return body

    async def status_json(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> bytes:
        """From Redis when hot: the cached value is the owner's id then the JSON, checked and sliced, not parsed."""
        owned = await self.cache.read_through(self.keys.status(workflow_id), partial(self._owned_status, workflow_id))
        if owned[:OWNER_PREFIX_LENGTH] != owner_id.hex.encode():
            raise NotFound("no workflow with this id")
        return owned[OWNER_PREFIX_LENGTH:]

    async def page_json(
        self,
        owner_id: uuid.UUID,
        status: WorkflowStatusName | None,
        limit: int,
        offset: int,
        cursor: str | None = None,
    ) -> bytes:
        """A page newest first, from `offset` or after `cursor` (a `next_cursor` of this owner's list and filter)."""
        check_page_request(offset, cursor)
        after = self.cursors.decode(owner_id, _list_scope(status), cursor) if cursor is not None else None
        entry = self.keys.page(owner_id, status, limit, offset, cursor)
        return await self.cache.read_through(entry, partial(self._page, owner_id, status, limit, offset, after))

    async def cash_flows_json(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> bytes:
        body: bytes | None = await self.asyncpg_pool.fetchval(queries.WORKFLOW_CASH_FLOWS, workflow_id, owner_id)
        if body is None:
            raise NotFound("no workflow with this id")
        return body

    async def result_json(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> bytes:
        row = await self.asyncpg_pool.fetchrow(queries.WORKFLOW_RESULT, workflow_id, owner_id)
        if row is None:
            raise NotFound("no workflow with this id")
        if row[0] is None:
            raise ConflictError("the workflow has no result yet: no run of it has succeeded")
        result: bytes = row[0]
        return result

    async def _owned_status(self, workflow_id: uuid.UUID) -> bytes:
        row = await self.asyncpg_pool.fetchrow(queries.OWNED_WORKFLOW_STATUS, workflow_id)
        if row is None:
            raise NotFound("no workflow with this id")
        owner_hex: str = row[0]
        status: bytes = row[1]
        return owner_hex.encode() + status

    async def _page(
        self,
        owner_id: uuid.UUID,
        status: WorkflowStatusName | None,
        limit: int,
        offset: int,
        after: Position | None,
    ) -> bytes:
        fetch = self.asyncpg_pool.fetch
        one_more = limit + 1
        if after is None and status is None:
            statement = queries.WORKFLOW_PAGE_AT_OFFSET if offset else queries.WORKFLOW_PAGE
            rows = await fetch(statement, owner_id, one_more, offset)
        elif after is None:
            statement = queries.WORKFLOW_PAGE_WITH_STATUS_AT_OFFSET if offset else queries.WORKFLOW_PAGE_WITH_STATUS
            rows = await fetch(statement, owner_id, one_more, offset, status)
        elif status is None:
            rows = await fetch(queries.WORKFLOW_PAGE_AFTER, owner_id, one_more, 0, *after)
        else:
            rows = await fetch(queries.WORKFLOW_PAGE_WITH_STATUS_AFTER, owner_id, one_more, 0, status, *after)
        assert rows, "a page statement answers a row past the end too"
        scope = _list_scope(status)
        return render_page(rows, limit, offset, partial(self.cursors.encode, owner_id, scope))


def _list_scope(status: str | None) -> str:
    return f"workflows:{status or '*'}"


class WorkflowService:
    """The writes, through the ORM on the request's session; each answers with the fresh JSON view from `reader`.

    A plain service rather than Advanced Alchemy's repository service: every write here is a conditional update
    under a row lock, which its generic CRUD does not express.
    """

    def __init__(
        self, session: AsyncSession, reader: WorkflowReader, events: EventBus, queue: PriorityRedisQueue
    ) -> None:
        self.session = session
        self.reader = reader
        self.events = events
        self.queue = queue

    def _notifier(self, workflow: Workflow) -> WorkflowNotifier:
        return WorkflowNotifier(self.reader.cache, self.events, workflow.id, workflow.owner_id)

    async def cancel_workflow(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> RunAccepted:
        """queued or running → cancelled, at once in PostgreSQL; a running job sees it at its next write."""
        workflow = await self._owned(workflow_id, owner_id)
        if workflow.status not in ACTIVE_STATUSES:
            raise ConflictError(f"the workflow is {workflow.status}, not queued or running")
        was_queued = workflow.status == "queued"
        await self._cancel(workflow)
        await self.session.commit()
        if was_queued:
            await self._drop_queued_job(workflow.job_id)
        await self._notifier(workflow).workflow_status("cancelled")
        return RunAccepted(id=workflow_id, status="cancelled", job_id=workflow.job_id)

    async def _cancel(self, workflow: Workflow) -> None:
        now = datetime.datetime.now(datetime.UTC)
        workflow.status = "cancelled"
        workflow.finished_at = now
        workflow.current_step = None
        session = self.session
        for before, after in (("running", "cancelled"), ("pending", "skipped")):
            await session.execute(
                update(WorkflowStep)
                .where(WorkflowStep.workflow_id == workflow.id, WorkflowStep.status == before)
                .values(status=after, updated_at=now, finished_at=now if after == "cancelled" else None)
            )

    async def _drop_queued_job(self, job_id: str | None) -> None:
        """Take a cancelled run's job out of its lane so no worker picks it (if one does, it finds it cancelled)."""
        if job_id is None:
            return
        try:
            job = await self.queue.job(job_id)
            if job is not None:
                await self.queue.abort(job, "cancelled")
        except REDIS_FAILURES:
            logger.warning("job %s stays in its lane; its worker will find the run cancelled", job_id)

    async def create_workflow(self, owner_id: uuid.UUID, data: WorkflowCreate) -> bytes:
        check_cash_flow_source(data)
        if data.upload_id is not None:
            await self._check_upload(owner_id, data.upload_id, data.parameters)
        workflow = Workflow(
            owner_id=owner_id,
            name=data.name,
            description=data.description,
            priority=data.priority,
            status="draft",
            progress=0.0,
            parameters=msgspec.to_builtins(data.parameters),
            cash_flows=data.cash_flows,
            upload_id=data.upload_id,
            steps=[
                WorkflowStep(position=position, kind=kind, agent=kind, status="pending", progress=0.0)
                for position, kind in enumerate(planned_steps(data.parameters))
            ],
        )
        session = self.session
        session.add(workflow)
        await session.commit()
        await self.reader.keys.changed(workflow.id, owner_id)
        return await self.reader.detail_json(workflow.id, owner_id)

    async def _check_upload(self, owner_id: uuid.UUID, upload_id: uuid.UUID, parameters: Parameters) -> None:
        """Only the caller's `ready` upload; its periods count towards the simulation limit as inline flows do."""
        periods = await self.session.scalar(
            select(Upload.periods).where(Upload.id == upload_id, Upload.owner_id == owner_id, Upload.status == "ready")
        )
        if periods is None:
            raise InvalidInput("upload_id: there is no ready upload with this id")
        if parameters.simulations * periods > MAX_SIMULATED_VALUES:
            raise InvalidInput(
                f"parameters.simulations: simulations x cash flows must be at most {MAX_SIMULATED_VALUES:,}"
                f" ({parameters.simulations:,} x {periods:,} periods in the upload)"
            )

    async def update_workflow(self, workflow_id: uuid.UUID, owner_id: uuid.UUID, patch: WorkflowPatch) -> bytes:
        workflow = await self._owned(workflow_id, owner_id)
        changes = {name: value for name, value in msgspec.structs.asdict(patch).items() if value is not msgspec.UNSET}
        for name, value in changes.items():
            setattr(workflow, name, value)
        await self.session.commit()
        await self.reader.keys.changed(workflow_id, owner_id)
        return await self.reader.detail_json(workflow_id, owner_id)

    async def delete_workflow(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        """Delete, cancelling a queued or running run first (in the same transaction)."""
        workflow = await self._owned(workflow_id, owner_id)
        was_active, was_queued, job_id = (
            workflow.status in ACTIVE_STATUSES,
            workflow.status == "queued",
            workflow.job_id,
        )
        session = self.session
        await session.execute(delete(Workflow).where(Workflow.id == workflow_id))
        await session.commit()
        if was_queued:
            await self._drop_queued_job(job_id)
        notifier = WorkflowNotifier(self.reader.cache, self.events, workflow_id, owner_id)
        if was_active:
            await notifier.workflow_status("cancelled", deleted=True)
        else:
            await notifier.changed()

    async def _owned(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> Workflow:
        workflow: Workflow | None = await self.session.scalar(
            select(Workflow).where(Workflow.id == workflow_id, Workflow.owner_id == owner_id).with_for_update()
        )
        if workflow is None:
            raise NotFound("no workflow with this id")
        return workflow
