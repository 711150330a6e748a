"""Running real SAQ workers for the job tests: in this process, or as `roi worker` processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from saq import Worker

from infra.queue import PriorityRedisQueue, create_queue
from infra.settings import Settings
from tests.integration.support import Account
from workers.worker import create_worker

TERMINAL = ("succeeded", "failed", "cancelled")
DEADLINE_S = 30.0


WORKER_SETTING_NAMES = {
    "concurrency": "worker_concurrency",
    "lost_after_s": "worker_lost_after_s",
    "requeue_after_s": "worker_requeue_after_s",
    "reconcile_interval_s": "worker_reconcile_interval_s",
    "data_dir": "roi_data_dir",
}


def worker_config(settings: Settings, **overrides: Any) -> Settings:
    """The test run's settings for a worker of 2 slots and a small pool, with `overrides` by their short names."""
    changes = {WORKER_SETTING_NAMES.get(name, name): value for name, value in overrides.items()}
    return msgspec.structs.replace(settings, **{"worker_concurrency": 2, "db_pool_size": 3, **changes})


@dataclass
class WorkerHandle:
    """A running worker, seen from the test: `queue` is a client of the worker's queue on the test's loop."""

    queue: PriorityRedisQueue


@contextlib.asynccontextmanager
async def running_worker(config: Settings) -> AsyncIterator[WorkerHandle]:
    """A real SAQ worker on its own thread and event loop, stopped on exit.

    Not on the test's loop: Litestar's test client blocks that loop while the app answers, and an app request
    waiting on a row lock the worker holds would then wait for ever.
    """
    worker: Worker[Any] = create_worker(config)
    worker.SIGNALS = []  # signal handlers belong to the main thread's loop
    loop = asyncio.new_event_loop()

    async def work() -> None:
        try:
            await worker.start()
        finally:
            await worker.queue.disconnect()

    thread = threading.Thread(target=loop.run_until_complete, args=(work(),), daemon=True)
    thread.start()
    assert config.redis_url
    inspection = create_queue(config.redis_url, config.redis_namespace)
    try:
        yield WorkerHandle(queue=inspection)
    finally:
        # Scheduled after work() started, so start() has already created the event that stop() sets.
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(worker.stop(), loop))
        await asyncio.to_thread(thread.join, DEADLINE_S)
        loop.close()
        await inspection.disconnect()


def worker_process(settings: Settings, **environment: str) -> subprocess.Popen[bytes]:
    """`roi worker` as a real process, with the test database, Redis and namespace."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "REDIS_NAMESPACE": settings.redis_namespace,
        "SECRET_KEY": settings.secret_key,
        "ROI_DATA_DIR": str(settings.roi_data_dir),
        **environment,
    }
    return subprocess.Popen([sys.executable, "-m", "app", "worker", "--concurrency", "2"], env=env)


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {deadline_s}s waiting until {what}"
        await asyncio.sleep(0.01)


async def status_of(client: AsyncTestClient, account: Account, workflow_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/workflows/{workflow_id}/status", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_status(
    client: AsyncTestClient, account: Account, workflow_id: str, statuses: tuple[str, ...] = TERMINAL
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen.update(await status_of(client, account, workflow_id))
        return seen["status"] in statuses

    await wait_until(reached, f"workflow {workflow_id} is {' or '.join(statuses)}")
    return seen


async def start_run(client: AsyncTestClient, account: Account, workflow_id: str) -> dict[str, Any]:
    response = await client.post(f"/api/workflows/{workflow_id}/run", headers=account.headers)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body
