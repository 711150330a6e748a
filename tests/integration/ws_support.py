"""For the /ws tests: a real Granian serving the app, WebSocket clients, tokens, and a raw socket that reads nothing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import websockets
from websockets.asyncio.client import ClientConnection

from infra.settings import Settings
from testkit.granian import Server, granian_server

RECEIVE_TIMEOUT_S = 10.0


class LiveServer:
    """Granian with the app on the test database, Redis namespace and secret; `log` is its stdout and stderr."""

    def __init__(self, server: Server, log: Path) -> None:
        self.server = server
        self.log = log

    def url(self, token: str | None = None) -> str:
        return f"ws://{self.server.address}/ws" + (f"?token={token}" if token else "")

    @property
    def base_url(self) -> str:
        return self.server.base_url


@contextlib.contextmanager
def live_server(settings: Settings, work_dir: Path, workers: int = 2, **environment: str) -> Iterator[LiveServer]:
    metrics = work_dir / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    env = {
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "REDIS_NAMESPACE": settings.redis_namespace,
        "SECRET_KEY": settings.secret_key,
        "ROI_DATA_DIR": str(work_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        **environment,
    }
    log = work_dir / "server.log"
    with granian_server("app.asgi:create_app", env, workers, log) as server:
        yield LiveServer(server, log)


def token_for(settings: Settings, user_id: str, expires_in_s: float) -> str:
    """A token like the API's, expiring when the test needs it to (already, if `expires_in_s` <= 0)."""
    now = datetime.datetime.now(datetime.UTC)
    claims = {"sub": user_id, "iat": now, "exp": now + datetime.timedelta(seconds=expires_in_s)}
    return jwt.encode(claims, settings.secret_key, algorithm="HS256")


@contextlib.asynccontextmanager
async def connected(url: str, **options: Any) -> AsyncIterator[ClientConnection]:
    """A client past the welcome frame."""
    async with websockets.connect(url, **options) as ws:
        welcome = await receive(ws)
        assert welcome["type"] == "welcome", welcome
        yield ws


async def receive(ws: ClientConnection, timeout_s: float = RECEIVE_TIMEOUT_S) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return frame


async def request(ws: ClientConnection, message: dict[str, Any] | str) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return await receive(ws)


async def subscribe(ws: ClientConnection, channel: str, since: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"op": "subscribe", "channel": channel}
    if since is not None:
        message["since"] = since
    answer = await request(ws, message)
    assert answer["type"] == "subscribed", answer
    return answer


async def events_until(
    ws: ClientConnection, done: Any, timeout_s: float = 30.0, skip_pings: bool = True
) -> list[dict[str, Any]]:
    """Event frames until one satisfies `done` (included)."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        frame = await receive(ws, max(0.01, deadline - asyncio.get_running_loop().time()))
        if skip_pings and frame["type"] == "ping":
            continue
        assert frame["type"] == "event", frame
        seen.append(frame)
        if done(frame):
            return seen


class RawClient:
    """A WebSocket client on a plain socket: it answers nothing and reads only when told to."""

    def __init__(self, address: str, path: str, receive_buffer: int = 4096) -> None:
        host, port = address.split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        assert len(payload) < 126
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def frames(self, timeout_s: float = RECEIVE_TIMEOUT_S) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of each frame the server sent, until it closes or goes quiet for `timeout_s`."""
        self.sock.settimeout(timeout_s)
        while True:
            frame = self._parse()
            if frame is not None:
                yield frame
                if frame[0] == 0x8:
                    return
                continue
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                return
            if not data:
                return
            self.buffer += data

    def _parse(self) -> tuple[int, bytes] | None:
        if len(self.buffer) < 2:
            return None
        opcode, length, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if length == 126:
            if len(self.buffer) < 4:
                return None
            length, offset = struct.unpack(">H", self.buffer[2:4])[0], 4
        elif length == 127:
            if len(self.buffer) < 10:
                return None
            length, offset = struct.unpack(">Q", self.buffer[2:10])[0], 10
        if len(self.buffer) < offset + length:
            return None
        payload, self.buffer = self.buffer[offset : offset + length], self.buffer[offset + length :]
        return opcode, payload

    def close(self) -> None:
        self.sock.close()


async def close_code_of(ws: ClientConnection) -> int | None:
    """Read until the server closes; its close code."""
    try:
        while True:
            await receive(ws)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def scrape(server: LiveServer) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{server.base_url}/metrics")).text


def close_code(payload: bytes) -> int:
    code: int = struct.unpack(">H", payload[:2])[0]
    return code


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series == name or series == f"{name}{{{wanted}}}":
            return float(value)
    return 0.0
