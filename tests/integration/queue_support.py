"""What the queue and worker-process tests share: SAQ's keys wiped, worker processes always reaped."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

from redis.asyncio import Redis

from infra.queue import QUEUE_NAME, PriorityRedisQueue
from infra.settings import Settings
from tests.integration.jobs_support import wait_until


def queue_name(settings: Settings) -> str:
    """The name the app and `roi worker` give the queue of the test namespace."""
    return f"{settings.redis_namespace}:{QUEUE_NAME}"


async def forget_queue(redis_url: str, name: str) -> None:
    """Delete every key SAQ keeps for the queue `name`: lanes, job records, stats, the sweep lock.

    The autouse cleanup only deletes `<namespace>:*`; SAQ's keys start with `saq:`, so jobs an earlier test left in
    a lane would otherwise still be there (and a sweep lock would stop a new worker's first sweep).
    """
    client = Redis.from_url(redis_url)
    try:
        for pattern in (f"saq:{name}:*", f"saq:job:{name}:*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def private_queue(settings: Settings) -> AsyncIterator[PriorityRedisQueue]:
    """A queue of its own (fresh name, empty lanes) on the test Redis, its keys deleted afterwards."""
    assert settings.redis_url
    name = f"{settings.redis_namespace}:private-{uuid.uuid4().hex[:8]}"
    queue = PriorityRedisQueue(Redis.from_url(settings.redis_url), name=name)
    try:
        yield queue
    finally:
        await queue.disconnect()
        await forget_queue(settings.redis_url, name)


@contextlib.contextmanager
def reaped() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to put started processes in; whatever still runs at the end is SIGKILLed and waited for."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


async def wait_for_exit(process: subprocess.Popen[bytes], deadline_s: float) -> int:
    async def exited() -> bool:
        return process.poll() is not None

    await wait_until(exited, f"process {process.pid} exits", deadline_s)
    assert process.returncode is not None
    return process.returncode
