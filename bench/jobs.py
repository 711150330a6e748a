"""The jobs scenario of `roi bench`: workflow runs on real `roi worker` processes, queued through the API.

Four rows, measured in every round:
- `jobs_start_idle`: enqueue→start of one run at a time, with an idle worker;
- `jobs_start_high_behind_low`: the same for a `high` run while at least 1,000 `low` runs wait. The worker is busy
  with them (that is why they wait), so a high run waits for the first of its slots to free;
- `jobs_high_after_free_slot`: for those high runs, from that slot freeing (the first low run to complete after the
  high one was queued) to the high run's start: the queue's own share. Had a freed slot taken a low run instead,
  the high one would wait for the next slot, a whole run longer;
- `jobs_throughput`: 200 runs queued at once through the API, drained by 2 worker processes: jobs/s, and their
  enqueue→start latencies (queueing included).

Times come from SAQ's job records, in milliseconds: `queued` is stamped by the API process that enqueues, `started`
and `completed` by the worker. A row's req/s column is jobs/s; its server CPU is the worker processes' (not the
API's); its errors are runs that did not succeed. The workers run with the production settings (4 slots each).
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import asyncpg
import click
import httpx
import msgspec
from saq import Job, Status
from saq.job import TERMINAL_STATUSES

from bench.accounts import sign_up
from bench.connection import Connection, UploadFailed
from bench.report import JobsDetail, Round, RunSettings, ScenarioResult, percentile, pooled_result
from bench.scenarios import JOB_ROWS
from bench.service import BenchFailed, expect
from bench.workers import WORKER_CONCURRENCY, WorkerProcesses, forget_queue
from db.pools import asyncpg_dsn
from infra.jobs import LANE_OF_PRIORITY, NOOP, PRIORITIES
from infra.queue import PriorityRedisQueue, create_queue
from testkit.granian import Server, cpu_seconds

IDLE, BEHIND_LOW, AFTER_FREE_SLOT, THROUGHPUT, FLOOR_ROW, BURST = JOB_ROWS
TRIVIAL = {"cash_flows": [-1000.0, 300.0, 400.0, 500.0], "parameters": {"discount_rate": 0.08}}
LOW_BACKLOG = 1000
LOWS_EATEN_PER_SAMPLE = 10
CONCURRENT_REQUESTS = 8
THROUGHPUT_RUNS = 200
THROUGHPUT_WORKERS = 2
BURST_RUNS = 1000
DEPTH_EVERY_S = 0.1
POLL_S = 0.002
BATCH_POLL_S = 0.05
JOB_DEADLINE_S = 120.0

T = TypeVar("T")
QueueRuns = Callable[[list[str]], Awaitable[list[str]]]
"""Queues the runs of these workflows through the API; their job ids."""


@dataclass(frozen=True)
class Plan:
    """How many samples a round takes: fewer with --quick."""

    idle_samples: int
    behind_samples: int

    @property
    def lows(self) -> int:
        """Enough low runs that about LOW_BACKLOG still wait at the last high sample."""
        return LOW_BACKLOG + LOWS_EATEN_PER_SAMPLE * self.behind_samples


@dataclass
class Phase:
    """One row's measurements in one round."""

    latencies_ms: list[float] = field(default_factory=list)
    jobs: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    worker_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    last_started_s: float = 0.0
    last_finished_s: float = 0.0
    own_start_ms: list[float] = field(default_factory=list)
    """The workflow's own `started_at - queued_at` of each run (what its owner sees), where taken."""


class ServerCpu:
    """CPU seconds used by PostgreSQL's backends of the bench's database and by redis-server, from /proc."""

    def __init__(self, database_url: str, queue: PriorityRedisQueue) -> None:
        self.database_url = database_url
        self.queue = queue
        self.before: dict[int, float] = {}
        self.redis_before = 0.0
        self.redis_pid = 0

    async def _backends(self) -> dict[int, float]:
        connection = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await connection.close()
        return {row["pid"]: cpu_seconds([row["pid"]]) for row in rows}

    async def start(self) -> None:
        self.redis_pid = int((await self.queue.redis.info("server"))["process_id"])
        self.before, self.redis_before = await self._backends(), cpu_seconds([self.redis_pid])

    async def stop(self, phase: Phase) -> None:
        """Adds to `phase` what was used since `start` (call before the workers stop: their backends go with them).
        A backend that connected meanwhile counts from zero."""
        after = await self._backends()
        phase.postgres_cpu_s += sum(cpu - self.before.get(pid, 0.0) for pid, cpu in after.items())
        phase.redis_cpu_s += cpu_seconds([self.redis_pid]) - self.redis_before


@dataclass(frozen=True)
class Workflows:
    idle: str
    high: str
    lows: list[str]
    throughput: list[str]


class _Created(msgspec.Struct):
    id: str


class _Accepted(msgspec.Struct):
    job_id: str


async def measure_jobs(
    deployed: Server,
    database_url: str,
    redis_url: str,
    environment: dict[str, str],
    settings: RunSettings,
    quick: bool,
    floor: ScenarioResult,
) -> tuple[list[ScenarioResult], list[str], JobsDetail]:
    """Every phase in `settings.rounds` rounds, each on fresh worker processes; one result row per JOB_ROWS name,
    the notes under the table and the detail for the JSON."""
    plan = Plan(idle_samples=50, behind_samples=30) if quick else Plan(idle_samples=200, behind_samples=100)
    queue = create_queue(redis_url, environment["REDIS_NAMESPACE"])
    servers = ServerCpu(database_url, queue)
    rounds: dict[str, list[Phase]] = {name: [] for name in JOB_ROWS}
    low_depths: list[int] = []
    burst_depths: list[list[float]] = []
    base_url = deployed.base_url
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as api:
            token, _ = await sign_up(base_url, "jobs")
            queue_runs = partial(_queue_runs, deployed, token)
            api.headers["Authorization"] = f"Bearer {token}"
            workflows = await _create_workflows(api, plan)
            with tempfile.TemporaryDirectory(prefix="roi-bench-workers-") as work_dir:
                workers = WorkerProcesses(environment, Path(work_dir) / "workers.log", queue)
                for round_number in range(1, settings.rounds + 1):
                    idle = await _idle_phase(api, queue, workers, workflows.idle, plan.idle_samples)
                    behind, after_free_slot, depths = await _behind_low_phase(
                        api, queue, workers, workflows, plan, database_url
                    )
                    low_depths += depths
                    throughput = await _throughput_phase(queue_runs, queue, workers, servers, workflows.throughput)
                    noop = await _floor_phase(queue, workers, servers, len(workflows.throughput))
                    idle_lows = await _not_active(database_url, workflows.lows)
                    burst, burst_depths = await _burst_phase(
                        queue_runs, queue, workers, servers, idle_lows[:BURST_RUNS]
                    )
                    phases = (idle, behind, after_free_slot, throughput, noop, burst)
                    for name, phase in zip(JOB_ROWS, phases, strict=True):
                        rounds[name].append(phase)
                        click.echo(
                            f"round {round_number}/{settings.rounds} {name}: {phase.jobs / phase.elapsed_s:,.0f} "
                            f"jobs/s, p95 {percentile(sorted(phase.latencies_ms), 0.95):.0f} ms, "
                            f"{phase.errors} errors",
                            err=True,
                        )
    finally:
        await forget_queue(queue)
    lows = f"{min(low_depths):,}-{max(low_depths):,} waiting low runs"
    requests = {
        IDLE: f"enqueue->start, one run at a time, idle worker (1 process x {WORKER_CONCURRENCY} slots)",
        BEHIND_LOW: f"enqueue->start of a high run behind {lows}, every slot busy with them",
        AFTER_FREE_SLOT: f"first slot freed->start of that high run, behind {lows}",
        THROUGHPUT: f"{THROUGHPUT_RUNS} runs queued at once, {THROUGHPUT_WORKERS} processes x {WORKER_CONCURRENCY}"
        " slots: jobs/s and enqueue->start",
        FLOOR_ROW: f"{THROUGHPUT_RUNS} no-op jobs queued at once, same queue, lanes, workers: jobs/s",
        BURST: f"{BURST_RUNS:,} runs queued at once through the API, {THROUGHPUT_WORKERS} processes: enqueue->start",
    }
    results = [_pooled(name, requests[name], phases, floor) for name, phases in rounds.items()]
    detail = _detail(rounds, burst_depths)
    return results, _notes(detail, rounds), detail


def _detail(rounds: dict[str, list[Phase]], burst_depths: list[list[float]]) -> JobsDetail:
    def per_run_us(phases: list[Phase], seconds: Callable[[Phase], float]) -> float:
        return statistics.median(seconds(phase) / phase.jobs * 1e6 for phase in phases)

    cpu = {
        name: {
            "worker": per_run_us(rounds[name], lambda phase: phase.worker_cpu_s),
            "postgresql": per_run_us(rounds[name], lambda phase: phase.postgres_cpu_s),
            "redis": per_run_us(rounds[name], lambda phase: phase.redis_cpu_s),
        }
        for name in (THROUGHPUT, FLOOR_ROW, BURST)
    }
    rates = {name: statistics.median(phase.jobs / phase.elapsed_s for phase in rounds[name]) for name in rounds}
    return JobsDetail(
        cpu_us_per_run=cpu,
        throughput_vs_floor=rates[THROUGHPUT] / rates[FLOOR_ROW],
        burst_last_started_s=[phase.last_started_s for phase in rounds[BURST]],
        burst_last_finished_s=[phase.last_finished_s for phase in rounds[BURST]],
        burst_depths=burst_depths,
        idle_own_start_ms=sorted(latency for phase in rounds[IDLE] for latency in phase.own_start_ms),
    )


def _notes(detail: JobsDetail, rounds: dict[str, list[Phase]]) -> list[str]:
    notes = [
        f"{name}: CPU per run {cpu['worker']:,.0f} µs in the workers, {cpu['postgresql']:,.0f} µs in PostgreSQL, "
        f"{cpu['redis']:,.0f} µs in Redis"
        for name, cpu in detail.cpu_us_per_run.items()
    ]
    notes.append(f"{THROUGHPUT}: {detail.throughput_vs_floor:.0%} of {FLOOR_ROW}'s jobs/s")
    own = detail.idle_own_start_ms
    if own:
        notes.append(
            f"{IDLE} on the workflow's own timestamps (started_at - queued_at): p50 {percentile(own, 0.5):.1f} ms, "
            f"p95 {percentile(own, 0.95):.1f} ms, p99 {percentile(own, 0.99):.1f} ms"
        )
    notes.append(
        f"{BURST}: last run started after "
        + ", ".join(f"{seconds:.2f}" for seconds in detail.burst_last_started_s)
        + " s, last finished after "
        + ", ".join(f"{seconds:.2f}" for seconds in detail.burst_last_finished_s)
        + " s (per round), from the first enqueue"
    )
    return notes


async def _floor_phase(queue: PriorityRedisQueue, workers: WorkerProcesses, servers: ServerCpu, count: int) -> Phase:
    """`count` no-op jobs queued at once straight into the normal lane, drained by the throughput's workers."""
    with workers.running(THROUGHPUT_WORKERS):
        await workers.ready(THROUGHPUT_WORKERS)
        await servers.start()
        cpu_before, client_before = workers.cpu_s(), time.process_time()
        stamp = uuid.uuid4().hex
        keys = [f"noop-{stamp}-{number}" for number in range(count)]
        enqueued = await _concurrently(
            keys, lambda key: queue.enqueue(NOOP, key=key, priority=LANE_OF_PRIORITY["normal"], timeout=60, ttl=600)
        )
        jobs = await _wait_all(queue, [job.key for job in enqueued if job is not None])
        worker_cpu_s, client_cpu_s = workers.cpu_s() - cpu_before, time.process_time() - client_before
        phase = _drained(jobs, worker_cpu_s, client_cpu_s, succeeded=lambda job: job.status == Status.COMPLETE)
        await servers.stop(phase)
    return phase


async def _burst_phase(
    queue_runs: QueueRuns,
    queue: PriorityRedisQueue,
    workers: WorkerProcesses,
    servers: ServerCpu,
    workflow_ids: list[str],
) -> tuple[Phase, list[list[float]]]:
    """Every run queued through the API as fast as it takes them; the lanes' depths sampled meanwhile."""
    depths: list[list[float]] = []
    with workers.running(THROUGHPUT_WORKERS):
        await workers.ready(THROUGHPUT_WORKERS)
        await servers.start()
        cpu_before, client_before = workers.cpu_s(), time.process_time()
        started = time.monotonic()

        async def sample_depths() -> None:
            while True:
                lanes = await queue.depths()
                depths.append([round(time.monotonic() - started, 3), *(float(lanes[name]) for name in PRIORITIES)])
                await asyncio.sleep(DEPTH_EVERY_S)

        sampler = asyncio.create_task(sample_depths())
        try:
            jobs = await _wait_all(queue, await queue_runs(workflow_ids))
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        worker_cpu_s, client_cpu_s = workers.cpu_s() - cpu_before, time.process_time() - client_before
        phase = _drained(jobs, worker_cpu_s, client_cpu_s, succeeded=_succeeded)
        await servers.stop(phase)
    return phase, depths


def _drained(jobs: list[Job], worker_cpu_s: float, client_cpu_s: float, succeeded: Callable[[Job], bool]) -> Phase:
    first_queued = min(job.queued for job in jobs)
    return Phase(
        latencies_ms=[float(job.started - job.queued) for job in jobs],
        jobs=len(jobs),
        errors=sum(not succeeded(job) for job in jobs),
        elapsed_s=(max(job.completed for job in jobs) - first_queued) / 1000,
        client_cpu_s=client_cpu_s,
        worker_cpu_s=worker_cpu_s,
        last_started_s=(max(job.started for job in jobs) - first_queued) / 1000,
        last_finished_s=(max(job.completed for job in jobs) - first_queued) / 1000,
    )


def _pooled(name: str, request: str, phases: list[Phase], floor: ScenarioResult) -> ScenarioResult:
    rounds = [
        Round(
            phase.latencies_ms,
            phase.jobs,
            phase.jobs,
            phase.errors,
            phase.elapsed_s,
            phase.client_cpu_s,
            phase.worker_cpu_s,
        )
        for phase in phases
    ]
    return pooled_result(name, "workers", request, rounds, floor)


async def _idle_phase(
    api: httpx.AsyncClient, queue: PriorityRedisQueue, workers: WorkerProcesses, workflow_id: str, samples: int
) -> Phase:
    with workers.running(1):
        await workers.ready(1)
        await _run_and_wait(api, queue, workflow_id)  # warm-up: pools filled, code paths taken once
        phase, _ = await _sample_runs(api, queue, workers, workflow_id, samples, own_times=True)
    return phase


async def _behind_low_phase(
    api: httpx.AsyncClient,
    queue: PriorityRedisQueue,
    workers: WorkerProcesses,
    workflows: Workflows,
    plan: Plan,
    database_url: str,
) -> tuple[Phase, Phase, list[int]]:
    """Queue the low runs with no worker, start one, time high runs while the lows wait; then cancel the rest."""
    low_job_ids = await _concurrently(workflows.lows, lambda workflow_id: _run(api, workflow_id))
    depths: list[int] = []

    async def note_low_depth() -> None:
        depths.append((await queue.depths())["low"])

    with workers.running(1):
        await workers.ready(1)
        behind, highs = await _sample_runs(
            api, queue, workers, workflows.high, plan.behind_samples, before_each=note_low_depth
        )
    after_free_slot = _after_free_slot(highs, [job for job in await queue.jobs(low_job_ids) if job is not None])
    after_free_slot.elapsed_s, after_free_slot.client_cpu_s = behind.elapsed_s, behind.client_cpu_s
    after_free_slot.worker_cpu_s = behind.worker_cpu_s
    # Stopped, the worker handed its running low runs back: every low run is now succeeded or queued.
    await _concurrently(await _queued(database_url), lambda workflow_id: _cancel(api, workflow_id))
    await _drop_strays(queue)
    return behind, after_free_slot, depths


def _after_free_slot(highs: list[Job], lows: list[Job]) -> Phase:
    """Each high run's wait from the first slot to free after it was queued (a low run completing) to its start."""
    phase = Phase(jobs=len(highs), errors=sum(not _succeeded(high) for high in highs))
    for high in highs:
        freed = [low.completed for low in lows if high.queued <= low.completed <= high.started]
        phase.latencies_ms.append(float(high.started - min(freed, default=high.queued)))
    return phase


async def _throughput_phase(
    queue_runs: QueueRuns,
    queue: PriorityRedisQueue,
    workers: WorkerProcesses,
    servers: ServerCpu,
    workflow_ids: list[str],
) -> Phase:
    with workers.running(THROUGHPUT_WORKERS):
        await workers.ready(THROUGHPUT_WORKERS)
        await servers.start()
        cpu_before, client_before = workers.cpu_s(), time.process_time()
        jobs = await _wait_all(queue, await queue_runs(workflow_ids))
        worker_cpu_s, client_cpu_s = workers.cpu_s() - cpu_before, time.process_time() - client_before
        phase = _drained(jobs, worker_cpu_s, client_cpu_s, succeeded=_succeeded)
        await servers.stop(phase)
    return phase


async def _sample_runs(
    api: httpx.AsyncClient,
    queue: PriorityRedisQueue,
    workers: WorkerProcesses,
    workflow_id: str,
    samples: int,
    before_each: Callable[[], Awaitable[None]] | None = None,
    own_times: bool = False,
) -> tuple[Phase, list[Job]]:
    """Run the workflow `samples` times, one after the other: each run is queued once the previous one ended. With
    `own_times`, each run's `started_at - queued_at` is read from the workflow after it (outside the timed span)."""
    jobs: list[Job] = []
    own_start_ms: list[float] = []
    reading_s = 0.0
    cpu_before, client_before, started_s = workers.cpu_s(), time.process_time(), time.perf_counter()
    for _ in range(samples):
        if before_each is not None:
            await before_each()
        jobs.append(await _run_and_wait(api, queue, workflow_id))
        if own_times:
            reading_started_s = time.perf_counter()
            own_start_ms.append(await _own_start_ms(api, workflow_id))
            reading_s += time.perf_counter() - reading_started_s
    phase = Phase(
        latencies_ms=[float(job.started - job.queued) for job in jobs],
        jobs=samples,
        errors=sum(not _succeeded(job) for job in jobs),
        elapsed_s=time.perf_counter() - started_s - reading_s,
        client_cpu_s=time.process_time() - client_before,
        worker_cpu_s=workers.cpu_s() - cpu_before,
        own_start_ms=own_start_ms,
    )
    return phase, jobs


class _Times(msgspec.Struct):
    queued_at: datetime.datetime
    started_at: datetime.datetime


async def _own_start_ms(api: httpx.AsyncClient, workflow_id: str) -> float:
    """The last run's start as its owner sees it: the workflow's `started_at - queued_at`."""
    times = msgspec.json.decode(expect(await api.get(f"/api/workflows/{workflow_id}"), 200, "jobs"), type=_Times)
    return (times.started_at - times.queued_at).total_seconds() * 1000


async def _run_and_wait(api: httpx.AsyncClient, queue: PriorityRedisQueue, workflow_id: str) -> Job:
    [job] = await _wait_all(queue, [await _run(api, workflow_id)])
    return job


async def _wait_all(queue: PriorityRedisQueue, job_ids: list[str]) -> list[Job]:
    """The jobs' records once every one has ended (polled: SAQ's listen can miss an end that came first).

    Only the records not yet ended are read again, and a batch is polled every BATCH_POLL_S: the times reported
    are SAQ's own stamps, so polling faster only adds load, and reading hundreds of records every 2 ms took more
    of Redis and of the 2 cores than the runs themselves.
    """
    deadline = time.monotonic() + JOB_DEADLINE_S
    ended: dict[str, Job] = {}
    pending = list(job_ids)
    pause = POLL_S if len(job_ids) == 1 else BATCH_POLL_S
    while True:
        for job_id, job in zip(pending, await queue.jobs(pending), strict=True):
            if job is not None and job.status in TERMINAL_STATUSES:
                ended[job_id] = job
        pending = [job_id for job_id in pending if job_id not in ended]
        if not pending:
            return [ended[job_id] for job_id in job_ids]
        if time.monotonic() > deadline:
            raise BenchFailed(f"jobs: {len(pending)} runs had not ended after {JOB_DEADLINE_S:g} s")
        await asyncio.sleep(pause)


def _succeeded(job: Job) -> bool:
    return job.status == Status.COMPLETE and job.result == "succeeded"


async def _create_workflows(api: httpx.AsyncClient, plan: Plan) -> Workflows:
    """Trivial workflows (4 cash flows, no simulation): one per idle and high run, the lows, the throughput batch."""

    async def create(priority: str) -> str:
        body = {"name": f"bench {priority}", "priority": priority, **TRIVIAL}
        answer = await api.post("/api/workflows", content=msgspec.json.encode(body))
        return msgspec.json.decode(expect(answer, 201, "jobs"), type=_Created).id

    priorities = ["normal", "high", *["low"] * plan.lows, *["normal"] * THROUGHPUT_RUNS]
    ids = await _concurrently(priorities, create)
    return Workflows(idle=ids[0], high=ids[1], lows=ids[2 : 2 + plan.lows], throughput=ids[2 + plan.lows :])


async def _run(api: httpx.AsyncClient, workflow_id: str) -> str:
    answer = await api.post(f"/api/workflows/{workflow_id}/run")
    return msgspec.json.decode(expect(answer, 202, "jobs"), type=_Accepted).job_id


async def _queue_runs(server: Server, token: str, workflow_ids: list[str]) -> list[str]:
    """Each workflow's run queued through the API, CONCURRENT_REQUESTS at a time; their job ids, in order."""
    headers = {"Authorization": f"Bearer {token}"}
    job_ids: dict[str, str] = {}
    waiting = iter(workflow_ids)

    async def one_connection() -> None:
        connection = Connection(server)
        try:
            for workflow_id in waiting:
                answer = await connection.request("POST", f"/api/workflows/{workflow_id}/run", headers)
                if answer.status != 202:
                    raise BenchFailed(f"jobs: a run was refused: {answer.status} {answer.body[:300]!r}")
                job_ids[workflow_id] = msgspec.json.decode(answer.body, type=_Accepted).job_id
        except UploadFailed as error:
            raise BenchFailed(f"jobs: {error}") from error
        finally:
            connection.close()

    await asyncio.gather(*(one_connection() for _ in range(CONCURRENT_REQUESTS)))
    return [job_ids[workflow_id] for workflow_id in workflow_ids]


async def _cancel(api: httpx.AsyncClient, workflow_id: str) -> None:
    answer = await api.post(f"/api/workflows/{workflow_id}/cancel")
    if answer.status_code != 409:  # it ended meanwhile
        expect(answer, 202, "jobs")


async def _queued(database_url: str) -> list[str]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch("SELECT id FROM roi_workflows WHERE status = 'queued'")
    finally:
        await connection.close()
    return [str(row["id"]) for row in rows]


async def _not_active(database_url: str, workflow_ids: list[str]) -> list[str]:
    """Those of `workflow_ids` neither queued nor running (a run handed back by a stopping worker may be queued)."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT id FROM roi_workflows WHERE id = ANY($1::uuid[]) AND status NOT IN ('queued', 'running')",
            workflow_ids,
        )
    finally:
        await connection.close()
    found = {str(row["id"]) for row in rows}
    return [workflow_id for workflow_id in workflow_ids if workflow_id in found]


async def _drop_strays(queue: PriorityRedisQueue) -> None:
    """Abort the jobs still in a lane once every queued run was cancelled: jobs of runs that had already ended.

    SAQ re-queues, on shutdown, a job whose function had returned but that it had not yet marked complete; the
    reconciler re-queues a run it listed as queued whose job ended meanwhile. A worker would find such a run not
    current and do nothing, but the next phase must start with empty lanes. An abort takes a job out of its lane
    only if its record says queued (SAQ's own abort clears the normal lane alone), so what it left in the high or
    low lane is removed here; no worker runs now.
    """
    strays = [_text(job_id) for lane in queue.lanes for job_id in await queue.redis.lrange(lane, 0, -1)]
    statuses: dict[str, int] = {}
    for job in await queue.jobs(queue.job_key_from_id(job_id) for job_id in strays):
        status = "no record" if job is None else str(job.status)
        statuses[status] = statuses.get(status, 0) + 1
        if job is not None:
            await queue.abort(job, "roi bench: a stray job of a run that had ended")
    left = [_text(job_id) for lane in queue.lanes for job_id in await queue.redis.lrange(lane, 0, -1)]
    for lane in queue.lanes:
        for job_id in set(left) & set(strays):
            await queue.redis.lrem(lane, 0, job_id)
    if strays:
        click.echo(
            f"{BEHIND_LOW}: aborted {len(strays)} stray job(s) of runs that had ended "
            f"({', '.join(f'{count} {status}' for status, count in statuses.items())}); "
            f"{len(set(left) & set(strays))} left in a lane by the abort were removed from it",
            err=True,
        )
    if sum((await queue.depths()).values()):
        raise BenchFailed(f"{BEHIND_LOW}: jobs are still queued after the low runs were cancelled")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _concurrently(items: list[str], call: Callable[[str], Awaitable[T]]) -> list[T]:
    """`call` for each item, CONCURRENT_REQUESTS at a time; the answers in the items' order."""
    gate = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def one(item: str) -> T:
        async with gate:
            return await call(item)

    return list(await asyncio.gather(*(one(item) for item in items)))
