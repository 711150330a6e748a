"""The WebSocket scenario of `roi bench`: N subscribers of one channel across the Granian workers.

For N in SUBSCRIBERS, every round:
- `ws_latency_<N>`: events published at a steady PACED_EVENTS_PER_S through `EventBus.publish` (as the API and the
  workers do); latency is publish call → frame received by each subscriber, every delivery counted;
- `ws_throughput_<N>`: events published as fast as the fan-out completes, WINDOW of them in flight; its req/s
  column is events/s delivered to all N subscribers (deliveries/s = that x N), its latencies are under that load.

The subscribers are lean asyncio protocols in this process (the `websockets` library costs ~20 µs a frame in
Python, which with 1,000 sockets would measure the client); their receive times include this process's own
scheduling on cores it shares with the server, so the figures are an upper bound of the server's latency.
A row's errors count deliveries missing, duplicated or out of order, and sockets closed by the server.
Idle memory per connection is the growth of the workers' RSS with N subscribed, idle sockets, divided by N; most of
it is Granian's own (a bare Litestar handler that only awaits `receive` measured ~150 KiB of the ~165 KiB here).
Issue 5's goals for the paced rows (p50 and p99) are judged with the others, from scenarios.GOALS.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import click
import msgspec
from redis.asyncio import Redis

from bench.accounts import sign_up
from bench.memory import status_bytes
from bench.report import Round, RunSettings, ScenarioResult, percentile, pooled_result
from bench.service import BenchFailed
from domain.events.bus import EventBus, user_channel
from testkit.granian import Server

SUBSCRIBERS = (100, 1000)
PACED_EVENTS_PER_S = 20.0
WINDOW = 8
CONNECT_BATCH = 50
EVENT_TIMEOUT_S = 10.0


@dataclass
class Phase:
    """One row's measurements in one round."""

    latencies_ms: list[float] = field(default_factory=list)
    events: int = 0
    deliveries: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0


class Fanout:
    """What every subscriber of the measured channel shares: when each event was published, who still waits."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.published: dict[int, float] = {}
        self.last_published: int | None = None
        self.waiting: dict[int, int] = {}
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.deliveries = 0
        self.complete = asyncio.Event()
        self.recording = True

    def publishing(self, seq: int, at: float) -> None:
        self.published[seq] = at
        self.last_published = seq
        self.waiting[seq] = self.subscribers

    def arrived(self, seq: int, at: float) -> None:
        published = self.published.get(seq)
        if published is None:
            return
        if self.recording:
            self.latencies_ms.append((at - published) * 1000)
            self.deliveries += 1
        left = self.waiting[seq] = self.waiting[seq] - 1
        if left == 0:
            del self.waiting[seq]
            self.complete.set()


class EventSocket(asyncio.Protocol):
    """A lean WebSocket client that parses only frame boundaries; answers heartbeats and notes `subscribed`.

    Subclasses take the events (`event`) and the server's close (`closed_by_server`): the fan-out rows here, and
    the users of the mixed load (bench/mixed.py), which read more of each event.
    """

    def __init__(self, host: str, path: str, clock: Callable[[], float] = time.perf_counter) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.clock = clock
        self.buffer = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.upgrade: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.subscribed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        """Resolves to the channel's sequence number when the subscription took effect."""
        self.closed = False

    def event(self, payload: bytes, at: float) -> None:
        """An event frame, received at `at` (by `clock`)."""
        raise NotImplementedError

    def closed_by_server(self) -> None:
        """A close frame from the server."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for waiting in (self.upgrade, self.subscribed):
            if not waiting.done():
                waiting.set_exception(ConnectionError(f"closed before subscribing: {exc}"))

    def send_text(self, text: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(text))
        assert self.transport is not None
        assert len(text) < 126
        self.transport.write(bytes([0x81, 0x80 | len(text)]) + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = self.clock()
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            head, separator, rest = buffer.partition(b"\r\n\r\n")
            if not separator:
                self.buffer = buffer
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgrade.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode()))
                return
            self.upgraded = True
            self.upgrade.set_result(None)
            buffer = rest
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            length = buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length, start = int.from_bytes(buffer[offset + 2 : offset + 4], "big"), offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length, start = int.from_bytes(buffer[offset + 2 : offset + 10], "big"), offset + 10
            if size < start + length:
                break
            self._frame(buffer[offset] & 0x0F, buffer[start : start + length], now)
            offset = start + length
        self.buffer = buffer[offset:]

    def _frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 0x8:
            self.closed = True
            self.closed_by_server()
        elif payload.startswith(b'{"type":"event"'):
            self.event(payload, now)
        elif payload.startswith(b'{"type":"ping"'):
            self.send_text(b'{"op":"pong"}')
        elif payload.startswith(b'{"type":"subscribed"') and not self.subscribed.done():
            self.subscribed.set_result(msgspec.json.decode(payload, type=_Subscribed).seq)


class _Subscribed(msgspec.Struct):
    seq: int


class Subscriber(EventSocket):
    """A subscriber of the measured channel: each event's `seq` only, found without decoding the frame."""

    def __init__(self, fanout: Fanout, host: str, path: str) -> None:
        super().__init__(host, path)
        self.fanout = fanout
        self.last_seq: int | None = None

    def event(self, payload: bytes, at: float) -> None:
        position = payload.find(b'"seq":')
        if position < 0:
            return
        seq = int(payload[position + 6 : payload.index(b",", position)])
        if self.last_seq is not None and seq != self.last_seq + 1:
            self.fanout.errors += 1
        self.last_seq = seq
        self.fanout.arrived(seq, at)

    def closed_by_server(self) -> None:
        self.fanout.errors += 1


async def measure_ws(
    server: Server, redis_url: str, namespace: str, settings: RunSettings, quick: bool, floor: ScenarioResult
) -> list[ScenarioResult]:
    """Both rows for each N in SUBSCRIBERS, in `settings.rounds` rounds; prints idle memory per connection."""
    paced_events = 20 if quick else 100
    throughput_s = 1.0 if quick else 3.0
    redis = Redis.from_url(redis_url)
    bus = EventBus(redis, namespace)
    results: list[ScenarioResult] = []
    idle_bytes: dict[int, list[float]] = {subscribers: [] for subscribers in SUBSCRIBERS}
    try:
        token, user_id = await sign_up(server.base_url, "ws")
        for subscribers in SUBSCRIBERS:
            channel = user_channel(user_id)
            rounds: dict[str, list[Phase]] = {"latency": [], "throughput": []}
            for round_number in range(1, settings.rounds + 1):
                fanout = Fanout(subscribers)
                rss_before = _workers_rss(server)
                sockets = await _subscribe_all(server, token, channel, fanout)
                await asyncio.sleep(0.5)
                per_connection = (_workers_rss(server) - rss_before) / subscribers
                idle_bytes[subscribers].append(per_connection)
                try:
                    await _publish_and_wait(bus, channel, fanout, 1)  # warm-up
                    latency = await _phase(server, bus, channel, fanout, _paced(paced_events))
                    throughput = await _phase(server, bus, channel, fanout, _windowed(throughput_s))
                finally:
                    for socket in sockets:
                        if socket.transport is not None:
                            socket.transport.close()
                rounds["latency"].append(latency)
                rounds["throughput"].append(throughput)
                click.echo(
                    f"round {round_number}/{settings.rounds} ws x{subscribers}: paced p50 "
                    f"{percentile(sorted(latency.latencies_ms), 0.5):.1f} ms p99 "
                    f"{percentile(sorted(latency.latencies_ms), 0.99):.1f} ms; "
                    f"{throughput.events / throughput.elapsed_s:,.0f} events/s "
                    f"({throughput.deliveries / throughput.elapsed_s:,.0f} deliveries/s); "
                    f"idle RSS {per_connection / 1024:.1f} KiB/connection; "
                    f"{latency.errors + throughput.errors} errors",
                    err=True,
                )
                await asyncio.sleep(0.5)
            results.append(
                _result(
                    f"ws_latency_{subscribers}",
                    f"WS /ws x{subscribers}, {PACED_EVENTS_PER_S:g} events/s",
                    rounds["latency"],
                    floor,
                )
            )
            results.append(
                _result(
                    f"ws_throughput_{subscribers}",
                    f"WS /ws x{subscribers}, {WINDOW} events in flight",
                    rounds["throughput"],
                    floor,
                )
            )
    finally:
        await redis.aclose()
    for subscribers, samples in idle_bytes.items():
        click.echo(
            f"ws: idle memory per connection with {subscribers} subscribed sockets: {max(samples) / 1024:.1f} KiB "
            "(workers' RSS growth / sockets, the most of any round: later rounds reuse memory freed before)"
        )
    return results


async def _subscribe_all(server: Server, token: str, channel: str, fanout: Fanout) -> list[Subscriber]:
    loop = asyncio.get_running_loop()
    subscribe = msgspec.json.encode({"op": "subscribe", "channel": channel})
    sockets: list[Subscriber] = []

    async def one() -> Subscriber:
        _, socket = await loop.create_connection(
            lambda: Subscriber(fanout, server.address, f"/ws?token={token}"), server.host, server.port
        )
        await asyncio.wait_for(socket.upgrade, EVENT_TIMEOUT_S)
        socket.send_text(subscribe)
        await asyncio.wait_for(socket.subscribed, EVENT_TIMEOUT_S)
        return socket

    try:
        for start in range(0, fanout.subscribers, CONNECT_BATCH):
            batch = min(CONNECT_BATCH, fanout.subscribers - start)
            sockets += await asyncio.gather(*(one() for _ in range(batch)))
    except (OSError, TimeoutError) as error:
        raise BenchFailed(f"ws: {len(sockets)} of {fanout.subscribers} subscribers connected: {error!r}") from error
    return sockets


async def _publish_and_wait(bus: EventBus, channel: str, fanout: Fanout, events: int) -> None:
    fanout.recording = False
    for _ in range(events):
        await _publish(bus, channel, fanout)
        await _until_complete(fanout, 0)
    fanout.recording = True


async def _publish(bus: EventBus, channel: str, fanout: Fanout) -> None:
    current = fanout.last_published if fanout.last_published is not None else await _current_seq(bus, channel)
    fanout.publishing(current + 1, time.perf_counter())
    seq = await bus.publish(channel, "workflow.progress", {"id": "bench", "progress": 0.5})
    if seq != current + 1:
        raise BenchFailed(f"ws: another publisher on {channel}? expected seq {current + 1}, got {seq}")


async def _current_seq(bus: EventBus, channel: str) -> int:
    return int(await bus.redis.get(bus.keys.sequence(channel)) or 0)


async def _until_complete(fanout: Fanout, in_flight: int) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while len(fanout.waiting) > in_flight:
        fanout.complete.clear()
        try:
            await asyncio.wait_for(fanout.complete.wait(), max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            fanout.errors += sum(fanout.waiting.values())
            fanout.waiting.clear()
            return


Publisher = Callable[[EventBus, str, Fanout], Awaitable[int]]


def _paced(events: int) -> Publisher:
    async def publish(bus: EventBus, channel: str, fanout: Fanout) -> int:
        interval = 1 / PACED_EVENTS_PER_S
        next_at = time.perf_counter()
        for _ in range(events):
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
            await _publish(bus, channel, fanout)
        await _until_complete(fanout, 0)
        return events

    return publish


def _windowed(duration_s: float) -> Publisher:
    async def publish(bus: EventBus, channel: str, fanout: Fanout) -> int:
        events = 0
        end = time.perf_counter() + duration_s
        while time.perf_counter() < end:
            await _until_complete(fanout, WINDOW - 1)
            await _publish(bus, channel, fanout)
            events += 1
        await _until_complete(fanout, 0)
        return events

    return publish


async def _phase(server: Server, bus: EventBus, channel: str, fanout: Fanout, publish: Publisher) -> Phase:
    fanout.latencies_ms, fanout.deliveries, fanout.errors = [], 0, 0
    client_cpu, server_cpu, started = time.process_time(), server.cpu_s(), time.perf_counter()
    events = await publish(bus, channel, fanout)
    elapsed = time.perf_counter() - started
    return Phase(
        latencies_ms=fanout.latencies_ms,
        events=events,
        deliveries=fanout.deliveries,
        errors=fanout.errors + max(0, events * fanout.subscribers - fanout.deliveries),
        elapsed_s=elapsed,
        client_cpu_s=time.process_time() - client_cpu,
        server_cpu_s=server.cpu_s() - server_cpu,
    )


def _result(name: str, request: str, phases: list[Phase], floor: ScenarioResult) -> ScenarioResult:
    rounds = [
        Round(
            phase.latencies_ms,
            phase.events,
            phase.deliveries,
            phase.errors,
            phase.elapsed_s,
            phase.client_cpu_s,
            phase.server_cpu_s,
        )
        for phase in phases
    ]
    return pooled_result(name, "deployed", request, rounds, floor)


def _workers_rss(server: Server) -> int:
    """Resident bytes of Granian's worker processes."""
    return sum(status_bytes(pid, "VmRSS") for pid in server.worker_pids())
