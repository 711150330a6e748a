"""A pooled connection broken mid-operation (its protocol still busy with a query it lost, seen during fast
PostgreSQL restarts as `cannot switch to state 12; another operation is in progress`) costs one 503, not a 500 and not
a failure for every request that draws it: the pool replaces its connections and the next request is served."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import exc as sa
from sqlalchemy import text

from app.unavailable import is_unavailable
from db.pools import create_engine
from domain.services import provide_services
from infra.settings import Settings
from tests.integration.support import Account

WORKFLOW = {"name": "w", "cash_flows": [-10.0, 6.0, 6.0], "parameters": {"discount_rate": 0.1}}


async def _until_running(db: asyncpg.Pool, backend_pid: int) -> None:
    deadline = time.monotonic() + 10
    query = "SELECT state = 'active' FROM pg_stat_activity WHERE pid = $1"
    while not await db.fetchval(query, backend_pid):
        assert time.monotonic() < deadline, "the query never started"


async def test_a_connection_left_mid_query_answers_503_once_then_the_pool_serves_again(
    client: AsyncTestClient, alice: Account, db: asyncpg.Pool
) -> None:
    workflow = (await client.post("/api/workflows", headers=alice.headers, json=WORKFLOW)).json()["id"]
    path = f"/api/workflows/{workflow}"
    assert (await client.get(path, headers=alice.headers)).status_code == 200

    # the app runs on the test client's own event loop: its pool is driven there
    portal = client.blocking_portal
    pool = provide_services(client.app.state).asyncpg_pool

    async def start_a_long_query() -> tuple[asyncpg.pool.PoolConnectionProxy, asyncio.Task[object]]:
        connection = await pool.acquire()
        return connection, asyncio.create_task(connection.fetchval("SELECT pg_sleep(60)"))

    async def stop(query: asyncio.Task[object]) -> None:
        query.cancel()
        await asyncio.gather(query, return_exceptions=True)

    connection, lost = portal.call(start_a_long_query)
    try:
        await _until_running(db, connection.get_server_pid())
        portal.call(pool.release, connection)  # back in the pool, still busy: the next request draws it (LIFO)

        broken = await client.get(path, headers=alice.headers)
        assert (broken.status_code, broken.headers.get("retry-after")) == (503, "2"), broken.text
        assert (await client.get(path, headers=alice.headers)).status_code == 200
    finally:
        portal.call(stop, lost)


async def test_the_orm_discards_a_connection_left_mid_query(settings: Settings, db: asyncpg.Pool) -> None:
    """asyncpg's SQLAlchemy dialect judges a disconnect by the socket alone, which is still open here."""
    engine = create_engine(settings, "roi-test-broken")
    try:
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            lost = asyncio.create_task(driver.fetchval("SELECT pg_sleep(60)"))
            try:
                await _until_running(db, driver.get_server_pid())
                with pytest.raises(sa.DBAPIError) as failed:
                    await connection.execute(text("SELECT 1"))
                assert failed.value.connection_invalidated
                assert is_unavailable(failed.value)
            finally:
                lost.cancel()
                await asyncio.gather(lost, return_exceptions=True)
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()
