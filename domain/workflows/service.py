"""Workflow rules: validation beyond the schema, planning steps, ownership, and the hot reads."""

from __future__ import annotations

import uuid
from functools import partial

import asyncpg
import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Workflow, WorkflowStep
from domain.cache import Cache, Entry
from domain.errors import InvalidInput, NotFound
from domain.workflows import queries
from domain.workflows.schemas import MAX_SIMULATED_VALUES, Parameters, WorkflowCreate, WorkflowPatch

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


STATUS_TTL_S = 60
LIST_TTL_S = 60
OWNER_PREFIX_LENGTH = 32


class WorkflowCacheKeys:
    """Every cache key of a workflow, in one place, so every writer drops exactly what its change touches."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def status(self, workflow_id: uuid.UUID) -> Entry:
        return Entry("workflow_status", self.cache.key("workflow", workflow_id, "status"), STATUS_TTL_S)

    def page(self, owner_id: uuid.UUID, status: str | None, limit: int, offset: int) -> Entry:
        return Entry("workflow_list", self.pages(owner_id), LIST_TTL_S, field=f"{status or '*'}:{limit}:{offset}")

    def pages(self, owner_id: uuid.UUID) -> str:
        return self.cache.key("workflows", "user", owner_id, "list")

    async def changed(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        """Call after committing any change to a workflow or its steps."""
        await self.cache.invalidate(self.status(workflow_id).key, self.pages(owner_id))


class WorkflowReader:
    """The hot reads: one statement each on the raw pool, PostgreSQL renders the JSON; status and pages cached."""

    def __init__(self, read_pool: asyncpg.Pool, cache: Cache) -> None:
        self.read_pool = read_pool
        self.cache = cache
        self.keys = WorkflowCacheKeys(cache)

    async def detail_json(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> bytes:
        body: bytes | None = await self.read_pool.fetchval(queries.WORKFLOW_DETAIL, workflow_id, owner_id)
        if body is None:
            raise NotFound("no workflow with this id")
        return body

    async def status_json(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> bytes:
        """From Redis when hot: the cached value is the owner's id then the JSON, checked and sliced, not parsed."""
        owned = await self.cache.read_through(self.keys.status(workflow_id), partial(self._owned_status, workflow_id))
        if owned[:OWNER_PREFIX_LENGTH] != owner_id.hex.encode():
            raise NotFound("no workflow with this id")
        return owned[OWNER_PREFIX_LENGTH:]

    async def page_json(self, owner_id: uuid.UUID, status: str | None, limit: int, offset: int) -> bytes:
        entry = self.keys.page(owner_id, status, limit, offset)
        return await self.cache.read_through(entry, partial(self._page, owner_id, status, limit, offset))

    async def _owned_status(self, workflow_id: uuid.UUID) -> bytes:
        owned: bytes | None = await self.read_pool.fetchval(queries.OWNED_WORKFLOW_STATUS, workflow_id)
        if owned is None:
            raise NotFound("no workflow with this id")
        return owned

    async def _page(self, owner_id: uuid.UUID, status: str | None, limit: int, offset: int) -> bytes:
        if status is None:
            page: bytes = await self.read_pool.fetchval(queries.WORKFLOW_PAGE, owner_id, limit, offset)
        else:
            page = await self.read_pool.fetchval(queries.WORKFLOW_PAGE_WITH_STATUS, owner_id, limit, offset, status)
        return page


class WorkflowService(SQLAlchemyAsyncRepositoryService[Workflow]):
    """The writes, through the ORM; each answers with the fresh JSON view from `reader`."""

    class Repo(SQLAlchemyAsyncRepository[Workflow]):
        model_type = Workflow

    repository_type = Repo

    def __init__(self, session: AsyncSession, reader: WorkflowReader) -> None:
        super().__init__(session=session)
        self.reader = reader

    async def create_workflow(self, owner_id: uuid.UUID, data: WorkflowCreate) -> bytes:
        check_cash_flow_source(data)
        if data.upload_id is not None:
            raise InvalidInput("upload_id: there is no ready upload with this id")
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
        session = self.repository.session
        session.add(workflow)
        await session.commit()
        await self.reader.keys.changed(workflow.id, owner_id)
        return await self.reader.detail_json(workflow.id, owner_id)

    async def update_workflow(self, workflow_id: uuid.UUID, owner_id: uuid.UUID, patch: WorkflowPatch) -> bytes:
        workflow = await self._owned(workflow_id, owner_id)
        changes = {name: value for name, value in msgspec.structs.asdict(patch).items() if value is not msgspec.UNSET}
        for name, value in changes.items():
            setattr(workflow, name, value)
        await self.repository.session.commit()
        await self.reader.keys.changed(workflow_id, owner_id)
        return await self.reader.detail_json(workflow_id, owner_id)

    async def delete_workflow(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        session = self.repository.session
        result = await session.execute(
            delete(Workflow).where(Workflow.id == workflow_id, Workflow.owner_id == owner_id).returning(Workflow.id)
        )
        if result.scalar_one_or_none() is None:
            raise NotFound("no workflow with this id")
        await session.commit()
        await self.reader.keys.changed(workflow_id, owner_id)

    async def _owned(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> Workflow:
        workflow: Workflow | None = await self.repository.session.scalar(
            select(Workflow).where(Workflow.id == workflow_id, Workflow.owner_id == owner_id).with_for_update()
        )
        if workflow is None:
            raise NotFound("no workflow with this id")
        return workflow
