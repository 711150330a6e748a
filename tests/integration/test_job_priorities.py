"""Priorities against real Redis: a high job queued behind 1,000 low and 10 normal ones starts next."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from saq import Status, Worker

from infra.jobs import LANE_OF_PRIORITY, PRIORITIES, Priority
from infra.queue import PriorityRedisQueue
from infra.settings import Settings
from tests.integration.jobs_support import start_run, wait_until
from tests.integration.queue_support import private_queue
from tests.integration.support import Account
from tests.integration.test_workflows import create

LOWS = 1000
NORMALS = 10


@pytest.fixture
async def lanes(settings: Settings) -> AsyncIterator[PriorityRedisQueue]:
    async with private_queue(settings) as queue:
        yield queue


async def test_a_high_job_behind_a_thousand_lows_and_ten_normals_starts_next(lanes: PriorityRedisQueue) -> None:
    release = asyncio.Event()
    blocking = asyncio.Event()
    recorded: list[str] = []

    async def block(ctx: dict[str, Any]) -> None:
        blocking.set()
        await release.wait()

    async def record(ctx: dict[str, Any]) -> None:
        recorded.append(ctx["job"].key)

    worker: Worker[Any] = Worker(
        lanes, functions=[("block", block), ("record", record)], concurrency=1, dequeue_timeout=1.0
    )
    running = asyncio.create_task(worker.start())
    try:
        await lanes.enqueue("block", key="block", timeout=60)

        async def slot_taken() -> bool:
            return blocking.is_set()

        await wait_until(slot_taken, "the only slot runs the blocking job")
        lows = [f"low-{i:04d}" for i in range(LOWS)]
        normals = [f"normal-{i:02d}" for i in range(NORMALS)]
        batches: list[tuple[list[str], Priority]] = [(lows, "low"), (normals, "normal"), (["high"], "high")]
        for keys, priority in batches:
            for key in keys:
                assert await lanes.enqueue("record", key=key, priority=LANE_OF_PRIORITY[priority]) is not None
        assert await lanes.depths() == {"high": 1, "normal": NORMALS, "low": LOWS}, "nothing started meanwhile"
        assert recorded == []

        release.set()

        async def all_recorded() -> bool:
            return len(recorded) == 1 + NORMALS + LOWS

        await wait_until(all_recorded, "every recording job ran", deadline_s=60)
    finally:
        release.set()
        await worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert recorded[0] == "high", f"the high job should start first, started: {recorded[:5]}"
    assert recorded[1 : 1 + NORMALS] == normals, "then the normal ones, in the order they were queued"
    assert recorded[1 + NORMALS :] == lows, "then the low ones, in the order they were queued"
    assert await lanes.depths() == {"high": 0, "normal": 0, "low": 0}


async def test_a_run_is_queued_in_the_lane_of_its_workflows_priority(
    client: AsyncTestClient[Litestar], alice: Account, app_queue: PriorityRedisQueue
) -> None:
    workflow = await create(client, alice, priority="high", cash_flows=[-100.0, 60.0, 60.0])
    path = f"/api/workflows/{workflow['id']}"
    accepted = await start_run(client, alice, workflow["id"])
    assert await app_queue.depths() == {"high": 1, "normal": 0, "low": 0}
    job = await app_queue.job(accepted["job_id"])
    assert job is not None
    assert (job.status, job.priority) == (Status.QUEUED, LANE_OF_PRIORITY["high"])

    assert (await client.post(f"{path}/cancel", headers=alice.headers)).status_code == 202
    assert await app_queue.depths() == {"high": 0, "normal": 0, "low": 0}, "a cancelled run leaves its lane"

    patched = await client.patch(path, json={"priority": "low"}, headers=alice.headers)
    assert patched.status_code == 200, patched.text
    await start_run(client, alice, workflow["id"])
    assert await app_queue.depths() == {"high": 0, "normal": 0, "low": 1}, "a rerun takes the new priority"
    assert (await client.post(f"{path}/cancel", headers=alice.headers)).status_code == 202
    assert await app_queue.depths() == {"high": 0, "normal": 0, "low": 0}


async def test_a_burst_of_enqueues_puts_every_job_in_the_lane_of_its_priority(lanes: PriorityRedisQueue) -> None:
    """More enqueues of mixed priorities at once than SAQ lets run together: none lands in another's lane, and a job
    that SAQ itself queues afterwards (one scheduled for now) still goes into the normal lane."""
    priorities = [PRIORITIES[index % 3] for index in range(90)]
    jobs = await asyncio.gather(
        *(
            lanes.enqueue("record", key=f"burst-{index}", priority=LANE_OF_PRIORITY[priority])
            for index, priority in enumerate(priorities)
        )
    )
    assert await lanes.depths() == {"high": 30, "normal": 30, "low": 30}
    for job in jobs:
        assert job is not None
        assert await lanes.is_in_lane(job), f"{job.key} (priority {job.priority}) is not in its lane"

    assert await lanes.enqueue("record", key="scheduled", scheduled=int(time.time())) is not None
    assert await lanes.schedule() == [lanes.job_id("scheduled")]
    assert await lanes.depths() == {"high": 30, "normal": 31, "low": 30}
