"""Running real SAQ workers for the job tests: in this process, or as `roi worker` processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar.testing import AsyncTestClient
from saq import Worker

from app.settings import Settings
from tests.integration.support import Account
from workers.worker import WorkerConfig, create_worker

TERMINAL = ("succeeded", "failed", "cancelled")
DEADLINE_S = 30.0


def worker_config(settings: Settings, **overrides: Any) -> WorkerConfig:
    assert settings.database_url
    assert settings.redis_url
    values: dict[str, Any] = {
        "database_url": settings.database_url,
        "redis_url": settings.redis_url,
        "namespace": settings.redis_namespace,
        "concurrency": 2,
        "db_pool_size": 3,
    }
    return WorkerConfig(**{**values, **overrides})


@contextlib.asynccontextmanager
async def running_worker(config: WorkerConfig) -> AsyncIterator[Worker[Any]]:
    """A SAQ worker on this event loop, stopped (and its job tasks with it) on exit."""
    worker = create_worker(config)
    task = asyncio.create_task(worker.start())
    try:
        yield worker
    finally:
        await worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.queue.disconnect()


def worker_process(settings: Settings, **environment: str) -> subprocess.Popen[bytes]:
    """`roi worker` as a real process, with the test database, Redis and namespace."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "REDIS_NAMESPACE": settings.redis_namespace,
        "SECRET_KEY": settings.secret_key,
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
