"""Redis caching of the hot reads: hits skip PostgreSQL, every write path invalidates, owners stay apart."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from db.statements import ExecutedStatement
from domain.cache import Cache, Entry
from infra.settings import Settings
from tests.integration.support import Account, served_by_request
from tests.integration.test_workflows import create


class StatementCounter:
    def __init__(self, client: AsyncTestClient) -> None:
        self.observers: list[Any] = client.app.state.services.query_observers
        self.seen: list[ExecutedStatement] = []

    def __enter__(self) -> list[ExecutedStatement]:
        self.observers.append(self._see)
        return self.seen

    def __exit__(self, *_: object) -> None:
        self.observers.remove(self._see)

    def _see(self, statement: ExecutedStatement) -> None:
        if served_by_request(statement):
            self.seen.append(statement)


async def test_hot_status_is_served_from_redis_without_postgresql(client: AsyncTestClient, alice: Account) -> None:
    workflow = await create(client, alice)
    path = f"/api/workflows/{workflow['id']}/status"
    first = await client.get(path, headers=alice.headers)
    with StatementCounter(client) as statements:
        second = await client.get(path, headers=alice.headers)
    assert second.status_code == 200
    assert second.content == first.content
    assert statements == []


async def test_hot_list_page_and_agents_are_served_from_redis(client: AsyncTestClient, alice: Account) -> None:
    await create(client, alice)
    first_page = await client.get("/api/workflows?limit=10", headers=alice.headers)
    first_agents = await client.get("/api/agents", headers=alice.headers)
    with StatementCounter(client) as statements:
        assert (await client.get("/api/workflows?limit=10", headers=alice.headers)).content == first_page.content
        assert (await client.get("/api/agents", headers=alice.headers)).content == first_agents.content
    assert statements == []


async def test_every_write_path_is_seen_by_the_next_read(client: AsyncTestClient, alice: Account) -> None:
    first = await create(client, alice, name="first")
    status_path = f"/api/workflows/{first['id']}/status"
    await client.get(status_path, headers=alice.headers)
    assert (await client.get("/api/workflows", headers=alice.headers)).json()["total"] == 1

    second = await create(client, alice, name="second")
    listed = (await client.get("/api/workflows", headers=alice.headers)).json()
    assert [item["name"] for item in listed["items"]] == ["second", "first"], "create invalidates the list"

    patched = (
        await client.patch(f"/api/workflows/{first['id']}", json={"name": "renamed"}, headers=alice.headers)
    ).json()
    status = (await client.get(status_path, headers=alice.headers)).json()
    assert status["updated_at"] == patched["updated_at"], "patch refreshes the status"
    listed = (await client.get("/api/workflows", headers=alice.headers)).json()
    assert [item["name"] for item in listed["items"]] == ["second", "renamed"], "patch invalidates the list"

    await client.delete(f"/api/workflows/{second['id']}", headers=alice.headers)
    assert (await client.get(f"/api/workflows/{second['id']}/status", headers=alice.headers)).status_code == 404
    listed = (await client.get("/api/workflows", headers=alice.headers)).json()
    assert [item["name"] for item in listed["items"]] == ["renamed"], "delete invalidates the list"


async def test_a_cached_status_never_answers_another_user(
    client: AsyncTestClient, alice: Account, bob: Account
) -> None:
    workflow = await create(client, alice)
    path = f"/api/workflows/{workflow['id']}/status"
    assert (await client.get(path, headers=alice.headers)).status_code == 200
    stolen = await client.get(path, headers=bob.headers)
    assert stolen.status_code == 404
    assert workflow["id"] not in stolen.text
    assert (await client.get("/api/workflows", headers=bob.headers)).json()["total"] == 0


async def test_a_reader_that_raced_a_writer_cannot_store_the_older_answer(settings: Settings, redis: Redis) -> None:
    cache = Cache(redis, settings.redis_namespace)
    entry = Entry("workflow_status", cache.key("race", uuid.uuid4()), ttl_s=60)

    async def read_then_lose_the_race() -> bytes:
        old = b"read before the write committed"
        await cache.invalidate(entry.key)  # the writer commits and invalidates while this reader is in PostgreSQL
        return old

    assert await cache.read_through(entry, read_then_lose_the_race) == b"read before the write committed"
    assert await redis.get(entry.key) is None, "the older answer must not be cached"

    async def fresh() -> bytes:
        return b"fresh"

    assert await cache.read_through(entry, fresh) == b"fresh"
    assert await redis.get(entry.key) == b"fresh", "an uncontended miss fills the cache"


async def test_list_pages_of_one_user_are_dropped_together(
    client: AsyncTestClient, alice: Account, db: asyncpg.Pool
) -> None:
    for _ in range(3):
        await create(client, alice)
    pages = ["/api/workflows?limit=1", "/api/workflows?limit=1&offset=1", "/api/workflows?status=draft"]
    for page in pages:
        await client.get(page, headers=alice.headers)
    newest = await create(client, alice, name="newest")
    assert (await client.get(pages[0], headers=alice.headers)).json()["items"][0]["id"] == newest["id"]
    assert (await client.get(pages[2], headers=alice.headers)).json()["total"] == 4
