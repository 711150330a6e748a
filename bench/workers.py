"""`roi worker` processes for the bench's job rows, and the cleanup of the bench's queue in Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.service import BenchFailed
from infra.queue import PriorityRedisQueue
from testkit.granian import FAILURE_LOG_LINES, cpu_seconds, log_tail

WORKER_CONCURRENCY = 4
WORKER_READY_S = 60.0
WORKER_STOP_S = 20.0
SAQ_WORKERS_PER_PROCESS = 2
"""A `roi worker` process registers two SAQ workers: the one for every lane and the express slot for `high`."""


async def forget_queue(queue: PriorityRedisQueue) -> None:
    """Delete SAQ's keys of the bench's queue (lanes, job records, stats): they are outside the bench's namespace."""
    try:
        for pattern in (f"saq:{queue.name}:*", f"saq:job:{queue.name}:*"):
            keys = [key async for key in queue.redis.scan_iter(match=pattern, count=1000)]
            if keys:
                await queue.redis.delete(*keys)
    finally:
        await queue.disconnect()


class WorkerProcesses:
    """`roi worker` processes with the bench's database, Redis and namespace; their output goes to one log."""

    def __init__(self, environment: dict[str, str], log_path: Path, queue: PriorityRedisQueue) -> None:
        self.environment = {**os.environ, **environment}
        self.log_path = log_path
        self.queue = queue
        self.processes: list[subprocess.Popen[bytes]] = []
        self.known_workers: set[str] = set()

    @contextmanager
    def running(self, count: int) -> Iterator[None]:
        """`count` fresh worker processes until the block ends, then SIGTERM (SIGKILL after WORKER_STOP_S)."""
        command = [sys.executable, "-m", "app", "worker", "--concurrency", str(WORKER_CONCURRENCY)]
        with self.log_path.open("ab") as log:
            self.processes = [
                subprocess.Popen(command, env=self.environment, stdout=log, stderr=subprocess.STDOUT)
                for _ in range(count)
            ]
        try:
            yield
        finally:
            for process in self.processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in self.processes:
                try:
                    process.wait(WORKER_STOP_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self.processes = []

    async def ready(self, count: int) -> None:
        """Until `count` new processes have registered both their SAQ workers with the queue (worker info, written
        once started): counting one per process, a phase could start with a process whose main worker was still
        starting, and its start-up counted in the phase's CPU and latencies."""
        deadline = time.monotonic() + WORKER_READY_S
        while True:
            new = set((await self.queue.info())["workers"]) - self.known_workers
            if len(new) >= count * SAQ_WORKERS_PER_PROCESS:
                self.known_workers |= new
                return
            exited = sum(process.poll() is not None for process in self.processes)
            if exited or time.monotonic() > deadline:
                raise BenchFailed(
                    f"jobs: {count} worker process(es) did not start ({exited} exited); the end of their log:\n"
                    + log_tail(self.log_path, FAILURE_LOG_LINES)
                )
            await asyncio.sleep(0.05)

    def cpu_s(self) -> float:
        """User and system CPU seconds of the running worker processes so far."""
        return cpu_seconds([process.pid for process in self.processes])
