"""Redis killed and restarted while a live Granian serves steady traffic: no 5xx at any time, reads fall back to
PostgreSQL meanwhile, and afterwards every write is visible in the next read (no stale cache)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import msgspec

from infra.settings import Settings
from tests.integration.redis_support import OwnRedis
from tests.integration.ws_support import live_server

LOAD_CLIENTS = 8


async def test_redis_restarted_mid_load_causes_no_5xx_and_leaves_no_stale_cache(
    settings: Settings,
    own_redis: OwnRedis,
    tmp_path: Path,
) -> None:
    ours = msgspec.structs.replace(settings, redis_url=own_redis.url)
    with live_server(ours, tmp_path, workers=2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as api:
            body = {"email": "erin@example.com", "password": "correct horse battery"}
            assert (await api.post("/api/auth/register", json={**body, "name": "Erin"})).status_code == 201
            headers = {
                "Authorization": f"Bearer {(await api.post('/api/auth/login', json=body)).json()['access_token']}"
            }
            new = {"name": "w0", "cash_flows": [-10.0, 6.0, 6.0], "parameters": {"discount_rate": 0.1}}
            workflow = (await api.post("/api/workflows", headers=headers, json=new)).json()["id"]

            statuses: Counter[int] = Counter()
            stop = asyncio.Event()

            async def steady_traffic(client_number: int) -> None:
                renames = 0
                while not stop.is_set():
                    answers = [
                        await api.get(f"/api/workflows/{workflow}/status", headers=headers),
                        await api.get("/api/workflows", headers=headers),
                    ]
                    if client_number == 0:
                        renames += 1
                        patch = {"name": f"w{renames}"}
                        answers.append(await api.patch(f"/api/workflows/{workflow}", headers=headers, json=patch))
                    statuses.update(answer.status_code for answer in answers)

            load = [asyncio.create_task(steady_traffic(number)) for number in range(LOAD_CLIENTS)]
            await _until(lambda: sum(statuses.values()) > 200)
            own_redis.kill()
            served_while_down = sum(statuses.values())
            await _until(lambda: sum(statuses.values()) > served_while_down + 200)
            own_redis.start()
            await _until(lambda: sum(statuses.values()) > served_while_down + 600)
            stop.set()
            await asyncio.gather(*load)

            assert set(statuses) == {200}, statuses
            for renamed in ("after-1", "after-2"):
                assert (
                    await api.patch(f"/api/workflows/{workflow}", headers=headers, json={"name": renamed})
                ).is_success
                page = (await api.get("/api/workflows", headers=headers)).json()
                assert page["items"][0]["name"] == renamed, "a list page cached before the restart is never served"


async def _until(condition: object, deadline_s: float = 30.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "the traffic stalled"
        await asyncio.sleep(0.05)
