"""The cache never stands in the way: Redis frozen, killed or absent — reads and writes go on, nothing stale after."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from infra.settings import Settings
from tests.integration.redis_support import OwnRedis, free_port, wait_for
from tests.integration.support import Account, sign_up
from tests.integration.test_cache import StatementCounter
from tests.integration.test_workflows import create


@pytest.fixture
async def faulty_client(settings: Settings, own_redis: OwnRedis) -> AsyncIterator[AsyncTestClient]:
    app = create_app(msgspec.structs.replace(settings, redis_url=own_redis.url))
    outcomes: list[tuple[str, str]] = []
    async with AsyncTestClient(app) as client:
        app.state.services.cache.record = lambda family, outcome: outcomes.append((family, outcome))
        app.state.outcomes = outcomes
        yield client


async def test_frozen_redis_falls_back_and_nothing_is_stale_after(
    faulty_client: AsyncTestClient, own_redis: OwnRedis
) -> None:
    client = faulty_client
    alice = await sign_up(client)
    workflow = await create(client, alice)
    status_path = f"/api/workflows/{workflow['id']}/status"
    await client.get(status_path, headers=alice.headers)  # cached now

    own_redis.freeze()
    started = time.monotonic()
    during = await client.get(status_path, headers=alice.headers)
    patched = await client.patch(f"/api/workflows/{workflow['id']}", json={"name": "renamed"}, headers=alice.headers)
    listed = await client.get("/api/workflows", headers=alice.headers)
    ready = await client.get("/ready")
    elapsed = time.monotonic() - started
    assert during.status_code == 200
    assert patched.status_code == 200
    assert listed.json()["items"][0]["name"] == "renamed"
    assert ready.status_code == 503
    assert ready.json()["dependencies"] == {"postgresql": "up", "redis": "down"}
    assert ("workflow_status", "fallback") in client.app.state.outcomes
    assert elapsed < 2.5, "a frozen Redis costs one short timeout, not a stall per request"

    own_redis.thaw()
    cache = client.app.state.services.cache
    await wait_for(lambda: _true(not cache._undelivered), "the missed invalidation is delivered")
    await wait_for(lambda: _true(cache.available), "the breaker closes")
    after = (await client.get(status_path, headers=alice.headers)).json()
    assert after["updated_at"] == patched.json()["updated_at"], "the status cached before the freeze was dropped"
    with StatementCounter(client) as statements:
        again = await client.get(status_path, headers=alice.headers)
    assert again.json() == after
    assert statements == [], "served from Redis again"


async def _true(value: bool) -> bool:
    return value


async def test_killed_and_restarted_redis(faulty_client: AsyncTestClient, own_redis: OwnRedis) -> None:
    client = faulty_client
    alice: Account = await sign_up(client)
    own_redis.kill()
    workflow = await create(client, alice)
    assert (await client.get(f"/api/workflows/{workflow['id']}", headers=alice.headers)).status_code == 200
    assert (await client.get(f"/api/workflows/{workflow['id']}/status", headers=alice.headers)).status_code == 200
    assert (await client.get("/api/agents", headers=alice.headers)).status_code == 200
    assert (await client.get("/ready")).status_code == 503

    own_redis.start()
    cache = client.app.state.services.cache
    await wait_for(lambda: _true(cache.available), "the breaker closes")
    await wait_for(
        lambda: _ready(client),
        "the service reports ready again",
    )
    path = f"/api/workflows/{workflow['id']}/status"
    await client.get(path, headers=alice.headers)
    with StatementCounter(client) as statements:
        assert (await client.get(path, headers=alice.headers)).status_code == 200
    assert statements == [], "the cache works again without a restart of the service"


async def _ready(client: AsyncTestClient) -> bool:
    return (await client.get("/ready")).status_code == 200


async def test_no_redis_at_all_still_serves(settings: Settings) -> None:
    app = create_app(msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with AsyncTestClient(app) as client:
        alice = await sign_up(client)
        workflow = await create(client, alice)
        assert (await client.get(f"/api/workflows/{workflow['id']}/status", headers=alice.headers)).status_code == 200
        assert (await client.get("/api/workflows", headers=alice.headers)).json()["total"] == 1
        assert (await client.get("/ready")).json()["dependencies"]["redis"] == "down"
