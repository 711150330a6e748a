"""The mixed load of `roi bench`: many users at once, for minutes, doing what the service is for.

Why: every other row loads one thing at a time. Here USERS users, each with WORKFLOWS_PER_USER workflows and a
WebSocket subscribed to its `user:<id>` channel, act one action after another with a random think time between
(exponential, mean THINK_S): list their workflows, read one's status or detail, run one and poll its status every
POLL_S until it ends, or upload a small ledger over tus, poll it until parsed and delete it. One `roi worker`
process runs the jobs (the production setting: 1 process x 4 slots). The load lasts DURATION_ROUNDS per-round
durations (120 s; 24 s with --quick); each user then finishes its action, and the events still on their way arrive.

Rows:
- `mixed_<kind>` for each kind of API request: from writing the request to reading the whole answer;
- `mixed_upload`: a whole tus upload (POST, then one PATCH); `mixed_upload_to_ready`: from its POST to the GET
  that shows it parsed;
- `mixed_job_start`: enqueue->start of every run and parse, from SAQ's job records (as bench/jobs.py);
- `mixed_ws_delivery`: each event on a user's channel, from its `ts` (stamped by the publisher, in the API or the
  worker) to its arrival here (the same machine's clock).

A row's req/s column is its kind's rate over the load; its CPU columns are the whole mix's (Granian's and the
worker's CPU over the load per request), which cannot be split by kind. Errors: answers of an unexpected status or
lost, runs that did not succeed, parses not `ready` with the ledger's rows, job records missing; events missing (a
gap in `seq`, or short of the channel's counter at the end), repeated or out of order; sockets the server closed.
Memory: VmRSS of Granian's processes and the worker's when the load starts, once warm (WARMUP_SHARE of the load,
at most WARMUP_MAX_S: imports, pools and caches fill first), at the end and every RSS_SAMPLE_S; "flat" is at most
FLAT_TOLERANCE_MIB of growth from warm to the end.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import httpx
import msgspec
from redis.asyncio import Redis

from bench.accounts import sign_up
from bench.connection import Answer, Connection, UploadFailed
from bench.memory import Memory, process_roles, status_mib
from bench.report import MixedReport, ProcessMemory, Round, RunSettings, ScenarioResult, pooled_result
from bench.scenarios import MIXED, MIXED_JOB_START, MIXED_ROWS, MIXED_WS
from bench.service import BenchFailed
from bench.uploads import TUS, Ledger, tus_upload
from bench.workers import WorkerProcesses, forget_queue
from bench.ws import EVENT_TIMEOUT_S, EventSocket
from domain.events.bus import EventKeys, user_channel
from infra.jobs import parse_job_key
from infra.queue import PriorityRedisQueue, create_queue
from testkit.factories import WorkflowCreateFactory
from testkit.granian import Server
from testkit.ledgers import csv_ledger_bytes

USERS = 20
WORKFLOWS_PER_USER = 20
LIST_LIMIT = 20
THINK_S = 0.2
ACTIONS = {"list": 35, "status": 35, "detail": 24, "run": 4, "upload": 2}
"""Relative weights of a user's next action: mostly reads, as people use the service; with 20 users about 110
requests, 4 runs and 2 parses a second. A job costs the worker ~30 ms of CPU, and one process (4 slots) took ~15
jobs/s in `jobs_throughput`: at 14 jobs/s (think 0.1 s, 5 % runs, 3 % uploads) job start p95 was 134 ms, the
worker's queue, not the API. So the jobs here stay near a third of one process's capacity."""
POLL_S = 0.05
LEDGER_ROWS = 2_000
"""About 70 KB: a small ledger, sent in one PATCH."""
DURATION_ROUNDS = 12
WARMUP_SHARE = 0.2
WARMUP_MAX_S = 15.0
RSS_SAMPLE_S = 5.0
FLAT_TOLERANCE_MIB = 8.0
ACTION_DEADLINE_S = 30.0
TAIL_S = 5.0
CONCURRENT_CREATES = 8
KEPT_FAILURES = 5
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
KINDS = ("list", "status", "detail", "run", "upload_poll", "upload_delete", "upload", "upload_to_ready")
"""The kinds of request timed here, each a `mixed_<kind>` row, in the registry's order."""


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0


class Mix:
    """What every user shares: a tally per kind, the jobs to look up, the first failures, and when to stop."""

    def __init__(self) -> None:
        self.tallies = {kind: Tally() for kind in KINDS}
        self.job_keys: list[str] = []
        self.failures: list[str] = []
        self.stopping = False

    def failed(self, kind: str, message: str) -> None:
        self.tallies[kind].errors += 1
        if len(self.failures) < KEPT_FAILURES:
            self.failures.append(f"{kind}: {message}")


class _Event(msgspec.Struct):
    seq: int
    ts: datetime.datetime


class _Status(msgspec.Struct):
    status: str


class _Accepted(msgspec.Struct):
    job_id: str


class _Upload(msgspec.Struct):
    status: str
    rows: int | None = None
    error: str | None = None


class _Created(msgspec.Struct):
    id: str


class UserSocket(EventSocket):
    """A user's WebSocket on its own channel: each event's delivery latency, and `seq` checked against gaps."""

    def __init__(self, host: str, path: str, latencies_ms: list[float]) -> None:
        super().__init__(host, path, clock=time.time)
        self.latencies_ms = latencies_ms
        self.last_seq: int | None = None
        self.received = 0
        self.missing = 0
        self.out_of_order = 0
        self.closed_by_peer = False

    def event(self, payload: bytes, at: float) -> None:
        frame = msgspec.json.decode(payload, type=_Event)
        self.received += 1
        self.latencies_ms.append((at - frame.ts.timestamp()) * 1000)
        last_seq = self.position(default=frame.seq - 1)
        if frame.seq <= last_seq:
            self.out_of_order += 1
            return
        self.missing += frame.seq - last_seq - 1
        self.last_seq = frame.seq

    def position(self, default: int = 0) -> int:
        """The last sequence number seen: the newest event's, else the channel's when the subscription began."""
        if self.last_seq is not None:
            return self.last_seq
        return self.subscribed.result() if self.subscribed.done() else default

    def closed_by_server(self) -> None:
        self.closed_by_peer = True


class User:
    """One user: a keep-alive connection for its requests, one action at a time; its workflows, its socket."""

    def __init__(self, number: int, server: Server, token: str, user_id: str, workflows: list[str], mix: Mix) -> None:
        self.random = random.Random(number)
        self.connection = Connection(server)
        self.bearer = {"Authorization": f"Bearer {token}"}
        self.token = token
        self.user_id = user_id
        self.workflows = workflows
        self.mix = mix
        self.socket: UserSocket | None = None

    async def act(self, ledger: Ledger) -> None:
        """Think, act, until the load stops; the action under way when it stops is finished."""
        actions, weights = list(ACTIONS), list(ACTIONS.values())
        while not self.mix.stopping:
            await asyncio.sleep(self.random.expovariate(1 / THINK_S))
            if self.mix.stopping:
                break
            action = self.random.choices(actions, weights)[0]
            workflow_id = self.random.choice(self.workflows)
            if action == "list":
                await self.read("list", f"/api/workflows?limit={LIST_LIMIT}")
            elif action == "status":
                await self.read("status", f"/api/workflows/{workflow_id}/status")
            elif action == "detail":
                await self.read("detail", f"/api/workflows/{workflow_id}")
            elif action == "run":
                await self.run(workflow_id)
            else:
                await self.upload(ledger)
        self.connection.close()

    async def read(self, kind: str, path: str) -> None:
        """A page read, timed under its kind: `act`'s reads, which the chaos run's users tally otherwise."""
        await self.call(kind, "GET", path, 200)

    async def call(
        self, kind: str, method: str, path: str, status: int, headers: dict[str, str] | None = None
    ) -> Answer | None:
        """One timed request; None (and an error of its kind) if it was lost or answered another status."""
        started = time.perf_counter()
        try:
            answer = await self.connection.request(method, path, {**self.bearer, **(headers or {})})
        except UploadFailed as error:
            self.mix.failed(kind, str(error))
            return None
        elapsed_ms = (time.perf_counter() - started) * 1000
        if answer.status != status:
            self.mix.failed(kind, f"{method} {path} answered {answer.status}: {answer.body[:200]!r}")
            return None
        self.mix.tallies[kind].latencies_ms.append(elapsed_ms)
        return answer

    async def run(self, workflow_id: str) -> None:
        """Queue a run, then poll its status until it ends, as a page showing it would."""
        answer = await self.call("run", "POST", f"/api/workflows/{workflow_id}/run", 202)
        if answer is None:
            return
        self.mix.job_keys.append(msgspec.json.decode(answer.body, type=_Accepted).job_id)
        deadline = time.monotonic() + ACTION_DEADLINE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            polled = await self.call("status", "GET", f"/api/workflows/{workflow_id}/status", 200)
            if polled is None:
                continue
            status = msgspec.json.decode(polled.body, type=_Status).status
            if status in TERMINAL:
                if status != "succeeded":
                    self.mix.failed("run", f"workflow {workflow_id} ended {status}")
                return
        self.mix.failed("run", f"workflow {workflow_id} had not ended after {ACTION_DEADLINE_S:g} s")

    async def upload(self, ledger: Ledger) -> None:
        """A tus upload in one PATCH, polled until parsed, then deleted."""
        started = time.perf_counter()
        try:
            location = await tus_upload(self.connection, self.token, ledger, len(ledger.data))
        except UploadFailed as error:
            self.mix.failed("upload", str(error))
            return
        self.mix.tallies["upload"].latencies_ms.append((time.perf_counter() - started) * 1000)
        self.mix.job_keys.append(parse_job_key(location.rsplit("/", 1)[1]))
        upload = await self._until_parsed(location, started)
        if upload is not None:
            if upload.status != "ready" or upload.rows != ledger.rows:
                self.mix.failed("upload_to_ready", f"{location}: {upload.status}, {upload.rows} rows, {upload.error}")
            else:
                self.mix.tallies["upload_to_ready"].latencies_ms.append((time.perf_counter() - started) * 1000)
        await self.call("upload_delete", "DELETE", location, 204, TUS)

    async def _until_parsed(self, location: str, started: float) -> _Upload | None:
        while time.perf_counter() - started < ACTION_DEADLINE_S:
            await asyncio.sleep(POLL_S)
            answer = await self.call("upload_poll", "GET", location, 200)
            if answer is not None:
                upload = msgspec.json.decode(answer.body, type=_Upload)
                if upload.status != "processing":
                    return upload
        self.mix.failed("upload_to_ready", f"{location}: still processing after {ACTION_DEADLINE_S:g} s")
        return None


async def measure_mixed(
    server: Server, environment: dict[str, str], settings: RunSettings, floor: ScenarioResult
) -> tuple[list[ScenarioResult], MixedReport]:
    """Sign the users up, start the worker, load for the duration; the rows and what they cannot hold."""
    duration_s = DURATION_ROUNDS * settings.duration_s
    warmup_s = min(WARMUP_MAX_S, WARMUP_SHARE * duration_s)
    data, _ = csv_ledger_bytes(LEDGER_ROWS)
    ledger = Ledger(data, LEDGER_ROWS)
    mix = Mix()
    delivery_ms: list[float] = []
    namespace = environment["REDIS_NAMESPACE"]
    queue = create_queue(environment["REDIS_URL"], namespace)
    redis = Redis.from_url(environment["REDIS_URL"])
    users: list[User] = []
    try:
        users = await _users(server, mix)
        with tempfile.TemporaryDirectory(prefix="roi-bench-mixed-") as work_dir:
            workers = WorkerProcesses(environment, Path(work_dir) / "workers.log", queue)
            with workers.running(1):
                await workers.ready(1)
                await _subscribe(server, users, delivery_ms)
                memory = Memory(process_roles(server, workers))
                click.echo(f"{MIXED}: {USERS} users for {duration_s:g} s", err=True)
                start_mib = memory.sample()
                cpu_before, client_before = server.cpu_s() + workers.cpu_s(), time.process_time()
                started = time.perf_counter()
                acting = [asyncio.create_task(user.act(ledger)) for user in users]
                warm_mib = await _load(memory, started, warmup_s, duration_s, mix)
                await asyncio.gather(*acting)
                elapsed_s = time.perf_counter() - started
                server_cpu_s = server.cpu_s() + workers.cpu_s() - cpu_before
                client_cpu_s = time.process_time() - client_before
                published = await _await_events(redis, EventKeys(namespace), users)
                end_mib = memory.sample()
                peaks = {pid: status_mib(pid, "VmHWM") for pid in memory.roles}
        job_start_ms, job_errors = await _job_starts(queue, mix)
    finally:
        for user in users:
            if user.socket is not None and user.socket.transport is not None:
                user.socket.transport.close()
        await redis.aclose()
        await forget_queue(queue)
    sockets = [user.socket for user in users if user.socket is not None]
    processes = [
        ProcessMemory(
            role=role,
            pid=pid,
            start_mib=start_mib[pid],
            warm_mib=warm_mib[pid],
            end_mib=end_mib[pid],
            peak_mib=peaks[pid],
            samples_mib=memory.samples[pid],
        )
        for pid, role in memory.roles.items()
    ]
    tallies = mix.tallies
    requests = {kind: len(tally.latencies_ms) + tally.errors for kind, tally in tallies.items()}
    # Every HTTP request: an upload is two (POST, PATCH); its wait until parsed is none of its own.
    http_requests = sum(requests[kind] for kind in KINDS if kind != "upload_to_ready") + requests["upload"]
    report = MixedReport(
        users=USERS,
        duration_s=round(elapsed_s, 1),
        warmup_s=warmup_s,
        worker_processes=1,
        http_requests=http_requests,
        requests=requests,
        errors={kind: tally.errors for kind, tally in tallies.items()} | {"job_start": job_errors},
        first_errors=mix.failures,
        events_published=published,
        events_received=sum(socket.received for socket in sockets),
        events_missing=sum(socket.missing for socket in sockets),
        events_out_of_order=sum(socket.out_of_order for socket in sockets),
        sockets_closed=sum(socket.closed_by_peer for socket in sockets),
        memory=processes,
        flat_tolerance_mib=FLAT_TOLERANCE_MIB,
    )
    cpu = (elapsed_s, client_cpu_s, server_cpu_s, http_requests)
    names = dict(zip([*KINDS, "job_start", "ws"], MIXED_ROWS, strict=True))
    results = [
        _row(names[kind], _request(kind), tally.latencies_ms, tally.errors, cpu, floor)
        for kind, tally in tallies.items()
    ]
    results.append(_row(MIXED_JOB_START, "enqueue->start of the runs and parses", job_start_ms, job_errors, cpu, floor))
    ws_errors = report.events_missing + report.events_out_of_order + report.sockets_closed
    results.append(_row(MIXED_WS, "event ts->arrival on the users' channels", delivery_ms, ws_errors, cpu, floor))
    click.echo(
        f"{MIXED}: {http_requests:,} HTTP requests, {report.total_errors} errors; "
        f"{report.events_received:,} of {published:,} events",
        err=True,
    )
    return results, report


async def _users(server: Server, mix: Mix) -> list[User]:
    """USERS users signed up, each with WORKFLOWS_PER_USER workflows created through the API."""
    accounts = [await sign_up(server.base_url, MIXED) for _ in range(USERS)]
    gate = asyncio.Semaphore(CONCURRENT_CREATES)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as api:

        async def create(token: str) -> str:
            async with gate:
                answer = await api.post(
                    "/api/workflows",
                    content=msgspec.json.encode(WorkflowCreateFactory.build()),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                )
            if answer.status_code != 201:
                raise BenchFailed(f"{MIXED}: creating a workflow answered {answer.status_code}: {answer.text}")
            return msgspec.json.decode(answer.content, type=_Created).id

        workflows = await asyncio.gather(
            *(asyncio.gather(*(create(token) for _ in range(WORKFLOWS_PER_USER))) for token, _ in accounts)
        )
    return [
        User(number, server, token, user_id, list(ids), mix)
        for number, ((token, user_id), ids) in enumerate(zip(accounts, workflows, strict=True))
    ]


async def _subscribe(server: Server, users: list[User], delivery_ms: list[float]) -> None:
    """Each user's socket, subscribed to its own channel before it acts, so it sees every event of its actions."""
    loop = asyncio.get_running_loop()

    async def one(user: User) -> None:
        _, socket = await loop.create_connection(
            lambda: UserSocket(server.address, f"/ws?token={user.token}", delivery_ms), server.host, server.port
        )
        user.socket = socket
        await asyncio.wait_for(socket.upgrade, EVENT_TIMEOUT_S)
        socket.send_text(msgspec.json.encode({"op": "subscribe", "channel": user_channel(user.user_id)}))
        await asyncio.wait_for(socket.subscribed, EVENT_TIMEOUT_S)

    try:
        await asyncio.gather(*(one(user) for user in users))
    except (OSError, TimeoutError) as error:
        raise BenchFailed(f"{MIXED}: a user's WebSocket did not subscribe: {error!r}") from error


async def _load(memory: Memory, started: float, warmup_s: float, duration_s: float, mix: Mix) -> dict[int, float]:
    """Sample memory until the load's end, then stop the users; the sample once warm."""
    warm: dict[int, float] | None = None
    next_sample = started + RSS_SAMPLE_S
    end = started + duration_s
    while (now := time.perf_counter()) < end:
        if warm is None and now - started >= warmup_s:
            warm = memory.sample()
            click.echo(f"mixed: warm after {warmup_s:g} s, {len(mix.failures)} failures so far", err=True)
        elif now >= next_sample:
            memory.sample()
            next_sample += RSS_SAMPLE_S
        await asyncio.sleep(min(0.5, end - now))
    mix.stopping = True
    return warm if warm is not None else memory.sample()


async def _await_events(redis: Redis, keys: EventKeys, users: list[User]) -> int:
    """Every channel's final number of events, once the sockets caught up with them (or TAIL_S passed)."""
    deadline = time.monotonic() + TAIL_S
    while True:
        counters = [int(await redis.get(keys.sequence(user_channel(user.user_id))) or 0) for user in users]
        behind = [
            user.socket is not None and user.socket.position() < counter
            for user, counter in zip(users, counters, strict=True)
        ]
        if not any(behind) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    published = 0
    for user, counter in zip(users, counters, strict=True):
        if user.socket is not None:
            subscribed_at = user.socket.subscribed.result()
            published += counter - subscribed_at
            user.socket.missing += max(0, counter - user.socket.position())
    return published


async def _job_starts(queue: PriorityRedisQueue, mix: Mix) -> tuple[list[float], int]:
    """Enqueue->start of every job the users caused, in ms; and how many have no record or never started."""
    latencies: list[float] = []
    errors = 0
    for start in range(0, len(mix.job_keys), 500):
        keys = mix.job_keys[start : start + 500]
        for key, job in zip(keys, await queue.jobs(keys), strict=True):
            if job is None or not job.started:
                errors += 1
                if len(mix.failures) < KEPT_FAILURES:
                    mix.failures.append(f"job_start: job {key} {'not found' if job is None else 'never started'}")
                continue
            latencies.append(float(job.started - job.queued))
    return latencies, errors


def _row(
    name: str,
    request: str,
    latencies_ms: list[float],
    errors: int,
    cpu: tuple[float, float, float, int],
    floor: ScenarioResult,
) -> ScenarioResult:
    """A row of the mix: its kind's rate and latencies; the whole mix's CPU (it cannot be split by kind)."""
    elapsed_s, client_cpu_s, server_cpu_s, requests = cpu
    result = pooled_result(
        name,
        "deployed",
        request,
        [Round(latencies_ms, len(latencies_ms), len(latencies_ms), errors, elapsed_s, client_cpu_s, server_cpu_s)],
        floor,
    )
    result.server_cpu_us_per_request = 1e6 * server_cpu_s / max(1, requests)
    return result


def _request(kind: str) -> str:
    return {
        "list": f"GET /api/workflows?limit={LIST_LIMIT}",
        "status": "GET /api/workflows/{id}/status (read, or polled every 50 ms while a run is under way)",
        "detail": "GET /api/workflows/{id}",
        "run": "POST /api/workflows/{id}/run",
        "upload_poll": "GET /api/uploads/{id} every 50 ms until parsed",
        "upload_delete": "DELETE /api/uploads/{id}",
        "upload": f"a {LEDGER_ROWS:,}-row ledger (tus POST, then one PATCH)",
        "upload_to_ready": "tus POST to the GET that shows the ledger parsed",
    }[kind] + f"; {USERS} users, think {THINK_S:g} s"
