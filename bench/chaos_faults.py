"""The fault injector of a chaos run: every 5-20 s (seeded) one fault, printed with its time, its window recorded.

A window runs from the fault's first act to the moment the service is whole again (`/ready` answers 200 for the
restarts; at once for a SIGKILL, which the supervisors must repair on their own). The checks allow a 503 only inside
the window of a fault that took a dependency down, plus a grace for the pools to notice it is back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import click
import httpx
import msgspec

from bench.chaos_clients import Answers, ChaosUser, resume_upload
from bench.chaos_cluster import Cluster
from bench.uploads import TUS, Ledger
from db.pools import asyncpg_dsn

MIN_INTERVAL_S = 5.0
MAX_INTERVAL_S = 20.0
MID_RUN_WAIT_S = 5.0
CUT_HEAD_DELAY_S = 0.3
REVOCATION_GRACE_S = 1.0
"""Revocation must be seen by every process within a second."""

KILL_GRANIAN_WORKER = "kill_granian_worker"
KILL_ROI_WORKER = "kill_roi_worker"
RESTART_API = "restart_api"
RESTART_REDIS = "restart_redis"
RESTART_POSTGRES_FAST = "restart_postgres_fast"
RESTART_POSTGRES_IMMEDIATE = "restart_postgres_immediate"
CUT_UPLOAD = "cut_upload"
REVOKE_TOKEN = "revoke_token"
FAULTS = (
    KILL_GRANIAN_WORKER,
    KILL_ROI_WORKER,
    RESTART_API,
    RESTART_REDIS,
    RESTART_POSTGRES_FAST,
    RESTART_POSTGRES_IMMEDIATE,
    CUT_UPLOAD,
    REVOKE_TOKEN,
)
CRASH = "crash"
"""Not injected: `roi serve` exiting by itself, and the time until it was started again."""
DEPENDENCY_DOWN = frozenset({RESTART_API, RESTART_REDIS, RESTART_POSTGRES_FAST, RESTART_POSTGRES_IMMEDIATE, CRASH})
"""The faults during which the API may answer 503 (a dependency, or the API's own process, is down)."""
CONNECTIONS_CUT = frozenset({KILL_GRANIAN_WORKER, RESTART_API, CRASH})
"""The faults during which a request may be lost with its connection."""


FAULT_ERRORS = (OSError, RuntimeError, click.ClickException, asyncpg.PostgresError, httpx.HTTPError, ValueError)
"""What injecting a fault may raise (a server that does not come back, a refused request): recorded as a problem."""


@dataclass
class Fault:
    number: int
    kind: str
    detail: str
    start_s: float
    end_s: float = 0.0


@dataclass
class Revocation:
    token: str
    revoked_at_s: float
    accepted_after: list[str] = field(default_factory=list)
    socket_open: bool = False
    """The user's WebSocket was open with this token when it was revoked: the server must close it with 4401."""
    socket_closes: list[int] = field(default_factory=list)
    """The codes the server closed WebSockets of this token with, REVOCATION_GRACE_S after the revocation."""


@dataclass
class FaultLog:
    faults: list[Fault] = field(default_factory=list)
    serve_exits: list[str] = field(default_factory=list)
    """`roi serve` exiting on its own: every one is a failure."""
    revocations: list[Revocation] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def windows(self, kinds: frozenset[str]) -> list[tuple[float, float]]:
        return [(fault.start_s, fault.end_s) for fault in self.faults if fault.kind in kinds]


async def logout_exists(base_url: str) -> bool:
    """Whether the API has `POST /api/auth/logout`: its OpenAPI document lists it."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        answer = await client.get("/schema/openapi.json")
    if answer.status_code != 200:
        return False
    paths = answer.json().get("paths", {})
    return "post" in paths.get("/api/auth/logout", {})


class Injector:
    """Injects the enabled faults in a seeded order until the load ends; repairs a `roi serve` that died."""

    def __init__(
        self,
        cluster: Cluster,
        users: list[ChaosUser],
        answers: Answers,
        ledger: Ledger,
        kinds: list[str],
        seed: int,
    ) -> None:
        self.cluster = cluster
        self.users = users
        self.answers = answers
        self.ledger = ledger
        self.kinds = kinds
        self.random = random.Random(seed)
        self.log = FaultLog()
        self.busy = asyncio.Lock()
        self.actions: dict[str, Callable[[], Awaitable[str]]] = {
            KILL_GRANIAN_WORKER: lambda: self._kill("granian worker"),
            KILL_ROI_WORKER: self._kill_roi_worker,
            RESTART_API: self._restart_api,
            RESTART_REDIS: self._restart_redis,
            RESTART_POSTGRES_FAST: lambda: self._restart_postgres("fast"),
            RESTART_POSTGRES_IMMEDIATE: lambda: self._restart_postgres("immediate"),
            CUT_UPLOAD: self._cut_upload,
            REVOKE_TOKEN: self._revoke_token,
        }

    async def run(self, duration_s: float) -> None:
        next_at = self.random.uniform(MIN_INTERVAL_S, MAX_INTERVAL_S)
        while True:
            wait_s = next_at - self.answers.now()
            if next_at >= duration_s:
                await asyncio.sleep(max(0.0, duration_s - self.answers.now()))
                return
            await asyncio.sleep(max(0.0, wait_s))
            kind = self.random.choice(self.kinds)
            number = sum(fault.kind != CRASH for fault in self.log.faults) + 1
            fault = Fault(number, kind, "", self.answers.now())
            async with self.busy:
                try:
                    fault.detail = await self.actions[kind]()
                except FAULT_ERRORS as error:  # a fault that cannot be injected is a finding, not the end of the run
                    fault.detail = f"could not be injected: {error!r}"
                    self.log.problems.append(f"fault {fault.number} {kind}: {error!r}")
                fault.end_s = self.answers.now()
            self.log.faults.append(fault)
            click.echo(
                f"chaos: t={fault.start_s:6.1f}s fault {fault.number:>2} {kind}: {fault.detail} "
                f"(whole again after {fault.end_s - fault.start_s:.1f} s)",
                err=True,
            )
            next_at = max(fault.start_s + self.random.uniform(MIN_INTERVAL_S, MAX_INTERVAL_S), fault.end_s + 1.0)

    async def watch_serve(self, stopping: asyncio.Event) -> None:
        """`roi serve` exiting when no fault stopped it: recorded, and started again so that the run goes on."""
        while not stopping.is_set():
            await asyncio.sleep(0.25)
            if self.busy.locked():
                continue
            code = self.cluster.api_exited()
            if code is None:
                continue
            async with self.busy:
                started = self.answers.now()
                self.log.serve_exits.append(f"t={started:.1f}s roi serve exited with code {code}")
                click.echo(f"chaos: t={started:6.1f}s roi serve EXITED with code {code}; starting it again", err=True)
                await asyncio.to_thread(self.cluster.start_api)
                self.log.faults.append(Fault(0, CRASH, f"roi serve exited ({code})", started, self.answers.now()))

    async def _kill(self, role: str) -> str:
        pid = self.cluster.kill(role, self.random.randrange(1 << 16))
        if pid is None:
            return f"no {role} to kill"
        return f"SIGKILL {role} {pid}"

    async def _kill_roi_worker(self) -> str:
        """Mid-run: wait (a little) for a run to be running, then SIGKILL the `roi worker` (one process runs all)."""
        deadline = time.monotonic() + MID_RUN_WAIT_S
        running = 0
        while time.monotonic() < deadline:
            running = await running_runs(self.cluster.database_url)
            if running:
                break
            await asyncio.sleep(0.1)
        detail = await self._kill("roi worker")
        return f"{detail} with {running} run(s) running"

    async def _restart_api(self) -> str:
        code = await asyncio.to_thread(self.cluster.restart_api)
        return f"SIGTERM roi serve (exited {code}), started again"

    async def _restart_redis(self) -> str:
        await asyncio.to_thread(self.cluster.restart_redis)
        await asyncio.to_thread(self.cluster.wait_ready)
        return "Valkey SIGTERM (snapshot saved), started again"

    async def _restart_postgres(self, mode: str) -> str:
        await asyncio.to_thread(self.cluster.restart_postgres, mode)
        await asyncio.to_thread(self.cluster.wait_ready)
        return f"PostgreSQL stopped -m {mode}, started again"

    async def _cut_upload(self) -> str:
        """A user's PATCH cut after part of its body, the connection reset; the user then resumes from HEAD."""
        user = self.random.choice(self.users).companion()
        size = len(self.ledger.data)
        cut = self.random.randrange(size // 4, 3 * size // 4)
        created = await user.send("POST", "/api/uploads", {**TUS, "Upload-Length": str(size)})
        if created is None or created.status != 201:
            return f"POST /api/uploads answered {None if created is None else created.status}: nothing to cut"
        location = created.headers.get("location", "")
        host, port = self.cluster.base_url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {user.token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        writer.write(head.encode() + self.ledger.data[:cut])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()
        await asyncio.sleep(CUT_HEAD_DELAY_S)
        head_answer = await user.send("HEAD", location, TUS)
        offset = 0
        if head_answer is not None and head_answer.status == 200:
            offset = int(head_answer.headers.get("upload-offset", "0"))
            if offset > cut:
                user.uploads.overstated.append(f"{location}: Upload-Offset {offset} after {cut} bytes sent")
        transcript: list[str] = []
        finished = await resume_upload(user, location, self.ledger, offset, sent=cut, transcript=transcript)
        user.connection.close()
        if not finished:
            self.log.problems.append(
                f"the upload cut at {cut:,} B could not be resumed to its end: {location} ({' '.join(transcript[:12])})"
            )
        return (
            f"PATCH of {size:,} B cut after {cut:,} B; HEAD said {offset:,} stored; "
            f"{'resumed to the end' if finished else 'NOT finished'}"
        )

    async def _revoke_token(self) -> str:
        """Log a user out, sign in again; after REVOCATION_GRACE_S, the old token must be refused everywhere."""
        user = self.random.choice(self.users)
        old = user.token
        socket_open = user.watch.open_token == old
        async with httpx.AsyncClient(base_url=self.cluster.base_url, timeout=10.0) as client:
            logout = await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {old}"})
            if logout.status_code >= 300:
                raise RuntimeError(f"logout answered {logout.status_code}: {logout.text[:200]}")
            revocation = Revocation(old, self.answers.now(), socket_open=socket_open)
            self.log.revocations.append(revocation)
            login = await client.post("/api/auth/login", json={"email": user.email, "password": user.password})
            if login.status_code == 200:
                user.use_token(msgspec.json.decode(login.content, type=_Token).access_token)
            await asyncio.sleep(REVOCATION_GRACE_S)
            revocation.socket_closes = list(user.watch.closed_tokens.get(old, []))
            probes = await probe_revoked(client, old)
        revocation.accepted_after += probes
        socket = f"its WebSocket closed with {revocation.socket_closes}" if socket_open else "no WebSocket open"
        return f"logout of user {user.user_id[:8]}; {socket}; old token accepted {len(probes)} time(s) after the grace"


async def probe_revoked(client: httpx.AsyncClient, token: str) -> list[str]:
    """Requests made with a revoked token that were not refused (as many as there are API workers, and more)."""
    accepted = []
    for _ in range(4):
        answer = await client.get("/api/workflows?limit=1", headers={"Authorization": f"Bearer {token}"})
        if answer.status_code < 300:
            accepted.append(f"GET /api/workflows answered {answer.status_code}")
    return accepted


class _Token(msgspec.Struct):
    access_token: str


async def running_runs(database_url: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM roi_workflows WHERE status = 'running'"))
    finally:
        await connection.close()
