"""A lean HTTP/1.1 keep-alive load generator: asyncio protocols on uvloop, one request in flight per connection.

Why not httpx or aiohttp: on a 2-core machine shared with the server their per-request Python work would make the
client, not the server, the bottleneck. Here a request is bytes encoded once, and a response is read only as far as
its status line and framing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from time import perf_counter, process_time
from typing import cast

import msgspec

NO_BODY_STATUSES = frozenset({204, 304})
DRAIN_TIMEOUT_S = 5.0
RECONNECT_DELAY_S = 0.1


class Measurement(msgspec.Struct):
    """One scenario over one window: every response completed inside it.

    `errors` counts responses of another status than the scenario expects, and requests lost with their connection.
    """

    requests: int
    errors: int
    elapsed_s: float
    client_cpu_s: float
    server_cpu_s: float
    latencies_s: list[float]


class _Load:
    """What the connections of one measurement share: the request, the clock and the tallies."""

    def __init__(self, host: str, port: int, request: bytes, expected_status: int, is_head: bool) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.expected_status = expected_status
        self.is_head = is_head
        self.recording = False
        self.stopping = False
        self.in_flight = 0
        self.errors = 0
        self.latencies_s: list[float] = []
        self.connections: set[_Connection] = set()
        self.reconnects: set[asyncio.Task[None]] = set()
        self.drained = asyncio.Event()

    async def connect(self) -> None:
        await asyncio.get_running_loop().create_connection(lambda: _Connection(self), self.host, self.port)

    def reconnect(self) -> None:
        task = asyncio.get_running_loop().create_task(self.connect())
        self.reconnects.add(task)
        task.add_done_callback(self._reconnected)

    def _reconnected(self, task: asyncio.Task[None]) -> None:
        self.reconnects.discard(task)
        if task.exception() is not None and not self.stopping:
            if self.recording:
                self.errors += 1
            asyncio.get_running_loop().call_later(RECONNECT_DELAY_S, self.reconnect)

    def sent(self) -> None:
        self.in_flight += 1

    def finished(self, latency_s: float, status: int) -> None:
        self.in_flight -= 1
        if self.recording:
            self.latencies_s.append(latency_s)
            if status != self.expected_status:
                self.errors += 1
        if self.stopping and not self.in_flight:
            self.drained.set()

    def lost(self, request_in_flight: bool) -> None:
        """A dropped request is an error; a new connection keeps the concurrency fixed."""
        if request_in_flight:
            self.in_flight -= 1
            if self.recording:
                self.errors += 1
        if not self.stopping:
            self.reconnect()
        elif not self.in_flight:
            self.drained.set()


class _Connection(asyncio.Protocol):
    def __init__(self, load: _Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent_at = 0.0
        self.awaiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        if self.load.stopping:  # a reconnection that completed after the window
            self.transport.close()
            return
        self.load.connections.add(self)
        self.send()

    def send(self) -> None:
        if self.load.stopping or self.transport is None:
            return
        self.load.sent()
        self.awaiting = True
        self.sent_at = perf_counter()
        self.transport.write(self.load.request)

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        size = response_size(self.buffer, self.load.is_head)
        if size is None:
            return
        latency_s = perf_counter() - self.sent_at
        status = int(self.buffer[9:12])
        self.buffer = self.buffer[size:]
        self.awaiting = False
        self.load.finished(latency_s, status)
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.connections.discard(self)
        self.transport = None
        self.load.lost(request_in_flight=self.awaiting)
        self.awaiting = False


def response_size(buffer: bytes, is_head: bool) -> int | None:
    """The length of the first HTTP/1.1 response in `buffer`, or None while it is incomplete."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    body_start = head_end + 4
    if is_head or int(buffer[9:12]) in NO_BODY_STATUSES:
        return body_start
    head = buffer[:head_end].lower()
    marker = head.find(b"\r\ncontent-length:")
    if marker >= 0:
        line_end = head.find(b"\r\n", marker + 2)
        size = body_start + int(head[marker + 17 : line_end if line_end >= 0 else None])
        return size if len(buffer) >= size else None
    if b"\r\ntransfer-encoding: chunked" in head:
        return _chunked_size(buffer, body_start)
    return body_start


def _chunked_size(buffer: bytes, position: int) -> int | None:
    """The end of a chunked body (without trailers) that starts at `position`, or None while it is incomplete."""
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        chunk_size = int(buffer[position:line_end].split(b";", 1)[0], 16)
        position = line_end + 2 + chunk_size + 2
        if len(buffer) < position:
            return None
        if chunk_size == 0:
            return position


async def measure(
    host: str,
    port: int,
    request: bytes,
    *,
    expected_status: int,
    connections: int,
    warmup_s: float,
    duration_s: float,
    server_cpu_s: Callable[[], float],
) -> Measurement:
    """Keep `connections` requests in flight for a warm-up, then record for `duration_s`, then drain and close.

    `server_cpu_s` reads the server's CPU seconds so far, at both ends of the window.
    """
    load = _Load(host, port, request, expected_status, is_head=request.startswith(b"HEAD "))
    await asyncio.gather(*(load.connect() for _ in range(connections)))
    await asyncio.sleep(warmup_s)
    load.recording = True
    started_s, client_cpu_started_s, server_cpu_started_s = perf_counter(), process_time(), server_cpu_s()
    await asyncio.sleep(duration_s)
    load.recording = False
    elapsed_s, client_cpu_s = perf_counter() - started_s, process_time() - client_cpu_started_s
    server_cpu_used_s = server_cpu_s() - server_cpu_started_s
    load.stopping = True
    if load.in_flight:
        with suppress(TimeoutError):  # responses this late fall outside the window anyway
            await asyncio.wait_for(load.drained.wait(), DRAIN_TIMEOUT_S)
    for connection in list(load.connections):
        if connection.transport is not None:
            connection.transport.close()
    return Measurement(len(load.latencies_s), load.errors, elapsed_s, client_cpu_s, server_cpu_used_s, load.latencies_s)
