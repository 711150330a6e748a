"""The users of a chaos run: the mixed load's users (bench/mixed.py), made to live through faults as clients should.

What changes from the mixed load: every answer is tallied by status and time (the checks judge them against the
fault windows), a lost request is retried by the next action rather than counted as an error, a tus upload resumes
from the server's `Upload-Offset` after a failed PATCH, and each user's WebSocket reconnects and subscribes again
with `since`, recording what the server says about what it could replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field

import msgspec

from bench.connection import Answer, UploadFailed
from bench.mixed import TERMINAL, Mix, User
from bench.uploads import TUS, Ledger
from bench.ws import EventSocket
from domain.events.bus import user_channel
from testkit.granian import Server

RUN_DEADLINE_S = 60.0
"""A run polled this long is left to the final check (a killed worker's run ends after the reconciler's delay)."""
RUN_POLL_S = 0.2
UPLOAD_DEADLINE_S = 60.0
RESUME_DELAY_S = 0.5
RECONNECT_DELAY_S = 0.5
UPGRADE_TIMEOUT_S = 10.0
KEPT_PROBLEMS = 20


@dataclass
class Answers:
    """Every HTTP answer of the run by status, the times of the 503s and of the lost requests, the 5xx seen."""

    started: float = field(default_factory=time.monotonic)
    statuses: Counter[int] = field(default_factory=Counter)
    unavailable_at: list[float] = field(default_factory=list)
    lost_at: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    def answered(self, method: str, path: str, answer: Answer) -> None:
        self.statuses[answer.status] += 1
        if answer.status == 503:
            self.unavailable_at.append(self.now())
        elif answer.status >= 500 or answer.status < 200:
            self.unexpected.append(f"t={self.now():.1f}s {method} {path}: {answer.status} {answer.body[:200]!r}")

    def lost(self) -> None:
        self.lost_at.append(self.now())


@dataclass
class FinishedUpload:
    """An upload the client saw acknowledged to its last byte: what the service must hold."""

    id: str
    sha256: str
    size: int
    rows: int


@dataclass
class Uploads:
    finished: list[FinishedUpload] = field(default_factory=list)
    abandoned: int = 0
    resumed: int = 0
    overstated: list[str] = field(default_factory=list)
    """Offsets the server acknowledged beyond the bytes the client had sent."""


class ChaosUser(User):
    """A user of the mixed load whose requests and uploads go through faults; see the module's docstring."""

    def __init__(
        self,
        number: int,
        server: Server,
        token: str,
        user_id: str,
        workflows: list[str],
        answers: Answers,
        uploads: Uploads,
        password: str,
        email: str,
    ) -> None:
        super().__init__(number, server, token, user_id, workflows, Mix())
        self.number = number
        self.server = server
        self.answers = answers
        self.uploads = uploads
        self.email = email
        self.password = password
        self.runs_started = 0
        self.watch = ChannelWatch()
        """What the user's WebSocket showed (bench/chaos.py keeps it open with `watch_channel`)."""

    def companion(self) -> ChaosUser:
        """The same user on a connection of its own (a second tab): one connection carries one request at a time."""
        twin = ChaosUser(
            self.number,
            self.server,
            self.token,
            self.user_id,
            self.workflows,
            self.answers,
            self.uploads,
            self.password,
            self.email,
        )
        twin.watch = self.watch
        return twin

    def use_token(self, token: str) -> None:
        self.token = token
        self.bearer = {"Authorization": f"Bearer {token}"}

    async def read(self, kind: str, path: str) -> None:
        """The mixed load's reads (its `act` drives this user too), tallied by status rather than timed."""
        await self.send("GET", path)

    async def send(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: memoryview | None = None
    ) -> Answer | None:
        """One request, its answer tallied; None when it was lost with its connection."""
        try:
            answer = await self.connection.request(method, path, {**self.bearer, **(headers or {})}, body)
        except UploadFailed:
            self.answers.lost()
            return None
        self.answers.answered(method, path, answer)
        return answer

    async def run(self, workflow_id: str) -> None:
        """Queue a run and poll its status until it ends or RUN_DEADLINE_S passes; the final check judges it."""
        answer = await self.send("POST", f"/api/workflows/{workflow_id}/run")
        if answer is None or answer.status != 202:
            return
        self.runs_started += 1
        deadline = time.monotonic() + RUN_DEADLINE_S
        while time.monotonic() < deadline and not self.mix.stopping:
            await asyncio.sleep(RUN_POLL_S)
            polled = await self.send("GET", f"/api/workflows/{workflow_id}/status")
            if polled is not None and polled.status == 200 and _status(polled) in TERMINAL:
                return

    async def upload(self, ledger: Ledger) -> None:
        """A tus upload resumed after each failure from the server's offset, then polled until parsed; kept."""
        created = await self.send("POST", "/api/uploads", {**TUS, "Upload-Length": str(len(ledger.data))})
        if created is None or created.status != 201:
            return
        location = created.headers.get("location", "")
        if await resume_upload(self, location, ledger, offset=0, sent=0):
            await self.until_parsed(location)

    async def until_parsed(self, location: str) -> None:
        deadline = time.monotonic() + UPLOAD_DEADLINE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(RUN_POLL_S)
            answer = await self.send("GET", location)
            if answer is not None and answer.status == 200 and _status(answer) != "processing":
                return


async def resume_upload(
    user: ChaosUser, location: str, ledger: Ledger, offset: int, sent: int, transcript: list[str] | None = None
) -> bool:
    """PATCH from `offset` until the server holds every byte; after a failure, HEAD for the offset it stored.

    `sent` is how far the client has ever sent: an offset beyond it was acknowledged without being received.
    True when the upload is complete (and recorded as finished); `transcript` gets each request's outcome.
    """
    transcript = [] if transcript is None else transcript
    size = len(ledger.data)
    data = memoryview(ledger.data)
    deadline = time.monotonic() + UPLOAD_DEADLINE_S
    failed = False
    while offset < size and time.monotonic() < deadline and not user.mix.stopping:
        headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        sent = max(sent, size)
        answer = await user.send("PATCH", location, headers, data[offset:])
        transcript.append(f"PATCH@{offset}:{'lost' if answer is None else answer.status}")
        if answer is not None and answer.status == 204:
            offset = int(answer.headers.get("upload-offset", "0"))
            continue
        # Answered before its body was read (409, 423), the connection may still hold the rest of the body: a new one.
        user.connection.close()
        failed = True
        await asyncio.sleep(RESUME_DELAY_S)
        head = await user.send("HEAD", location, TUS)
        transcript.append(f"HEAD:{'lost' if head is None else head.status}")
        if head is not None and head.status == 200:
            offset = int(head.headers.get("upload-offset", "0"))
            if offset > sent:
                user.uploads.overstated.append(f"{location}: Upload-Offset {offset} after {sent} bytes sent")
        elif head is not None and head.status in (404, 410):
            break
    if offset != size:
        user.uploads.abandoned += 1
        return False
    user.uploads.resumed += failed
    digest = hashlib.sha256(ledger.data).hexdigest()
    user.uploads.finished.append(FinishedUpload(location.rsplit("/", 1)[1], digest, size, ledger.rows))
    return True


class _Status(msgspec.Struct):
    status: str


def _status(answer: Answer) -> str:
    return msgspec.json.decode(answer.body, type=_Status).status


class _Frame(msgspec.Struct):
    type: str
    seq: int = 0
    recovered: bool = True
    code: str | None = None


@dataclass
class ChannelWatch:
    """What one user's channel showed across every connection: each event in order once, or a told gap."""

    last_seq: int | None = None
    received: int = 0
    gaps: int = 0
    """Events skipped without the server saying `recovered: false`."""
    out_of_order: int = 0
    unrecovered: int = 0
    """Subscriptions answered `recovered: false`: the client was told to refetch."""
    connections: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    open_token: str | None = None
    """The token of the connection open now, upgraded and not yet closed."""
    closed_tokens: dict[str, list[int]] = field(default_factory=dict)
    """Close codes the server sent, by the token of the connection it closed."""

    def closed(self, token: str, code: int) -> None:
        self.close_codes[code] += 1
        self.closed_tokens.setdefault(token, []).append(code)

    def subscribed(self, seq: int, recovered: bool) -> None:
        if not recovered or self.last_seq is None:
            self.unrecovered += not recovered
            self.last_seq = seq

    def event(self, seq: int) -> None:
        self.received += 1
        if self.last_seq is not None:
            if seq <= self.last_seq:
                self.out_of_order += 1
                self._problem(f"seq {seq} after {self.last_seq}")
                return
            if seq != self.last_seq + 1:
                self.gaps += seq - self.last_seq - 1
                self._problem(f"seq {seq} after {self.last_seq}, no recovered: false")
        self.last_seq = seq

    def _problem(self, text: str) -> None:
        if len(self.problems) < KEPT_PROBLEMS:
            self.problems.append(text)


class ChaosSocket(EventSocket):
    """One connection of a user's watch: subscribes with `since` once upgraded, again after `unavailable`."""

    def __init__(self, host: str, token: str, channel: str, watch: ChannelWatch) -> None:
        super().__init__(host, f"/ws?token={token}")
        self.token = token
        self.channel = channel
        self.watch = watch
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def subscribe(self) -> None:
        if self.closed or self.transport is None:
            return
        frame: dict[str, object] = {"op": "subscribe", "channel": self.channel}
        if self.watch.last_seq is not None:
            frame["since"] = self.watch.last_seq
        self.send_text(msgspec.json.encode(frame))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.watch.open_token == self.token:
            self.watch.open_token = None
        if not self.upgrade.done():
            self.upgrade.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))
        if not self.subscribed.done():
            self.subscribed.cancel()
        if not self.lost.done():
            self.lost.set_result(None)

    def event(self, payload: bytes, at: float) -> None:
        self.watch.event(msgspec.json.decode(payload, type=_Frame).seq)

    def _frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 0x8:
            self.closed = True
            self.watch.closed(self.token, int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005)
            if self.transport is not None:
                self.transport.close()
        elif payload.startswith(b'{"type":"subscribed"'):
            frame = msgspec.json.decode(payload, type=_Frame)
            self.watch.subscribed(frame.seq, frame.recovered)
            if not self.subscribed.done():
                self.subscribed.set_result(frame.seq)
        elif payload.startswith(b'{"type":"error"'):
            # `unavailable` while a dependency is down: subscribe again shortly, as the contract says.
            asyncio.get_running_loop().call_later(RECONNECT_DELAY_S, self.subscribe)
        else:
            super()._frame(opcode, payload, now)


async def watch_channel(user: ChaosUser, server: Server, watch: ChannelWatch, stopping: asyncio.Event) -> None:
    """The user's socket on `user:<id>`, reconnected after every close until `stopping`."""
    loop = asyncio.get_running_loop()
    channel = user_channel(user.user_id)
    while not stopping.is_set():
        socket: ChaosSocket | None = None
        try:
            _, socket = await loop.create_connection(
                lambda: ChaosSocket(server.address, user.token, channel, watch), server.host, server.port
            )
            await asyncio.wait_for(socket.upgrade, UPGRADE_TIMEOUT_S)
            watch.connections += 1
            if not socket.closed:
                watch.open_token = socket.token
            socket.subscribe()
            stop: asyncio.Future[object] = asyncio.ensure_future(stopping.wait())
            lost: asyncio.Future[object] = socket.lost  # type: ignore[assignment]
            await asyncio.wait({lost, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
        except (OSError, TimeoutError):
            pass  # refused or cut while a fault lasts: try again
        finally:
            if socket is not None and socket.transport is not None:
                socket.transport.close()
        if not stopping.is_set():
            await asyncio.sleep(RECONNECT_DELAY_S)
