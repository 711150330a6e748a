"""The data the scenarios read, created through the real HTTP API (and SQL only where the API cannot go)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import msgspec

from bench.accounts import sign_up
from bench.scenarios import Seed
from bench.service import expect
from db.pools import asyncpg_dsn
from domain.workflows.service import STEP_KINDS_WITH_SIMULATION
from testkit.factories import WorkflowCreateFactory

WORKFLOW_COUNT = 200
STEPS_IN_DETAIL = 20
CONCURRENT_CREATES = 8

INSERT_STEP = """
INSERT INTO workflow_steps (id, workflow_id, position, kind, agent, status, progress, created_at, updated_at)
VALUES ($1, $2, $3, $4, $4, 'pending', 0.0, now(), now())"""


class _Created(msgspec.Struct):
    id: uuid.UUID
    steps: list[msgspec.Raw]


async def seed(base_url: str, database_url: str) -> Seed:
    """One user with WORKFLOW_COUNT workflows; the first has STEPS_IN_DETAIL steps (the API plans 4 or 5)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        token, _ = await sign_up(base_url, "seed")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        gate = asyncio.Semaphore(CONCURRENT_CREATES)

        async def create() -> _Created:
            async with gate:
                answer = await client.post(
                    "/api/workflows", content=msgspec.json.encode(WorkflowCreateFactory.build()), headers=headers
                )
            return msgspec.json.decode(expect(answer, 201, "seeding"), type=_Created)

        workflows = await asyncio.gather(*(create() for _ in range(WORKFLOW_COUNT)))
    detailed = workflows[0]
    await _add_steps(database_url, detailed.id, first_position=len(detailed.steps))
    return Seed(token=token, workflow_id=str(detailed.id))


async def _add_steps(database_url: str, workflow_id: uuid.UUID, first_position: int) -> None:
    kinds = STEP_KINDS_WITH_SIMULATION
    rows = [
        (uuid.uuid4(), workflow_id, position, kinds[position % len(kinds)])
        for position in range(first_position, STEPS_IN_DETAIL)
    ]
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.executemany(INSERT_STEP, rows)
    finally:
        await connection.close()
