"""/ws under pressure on a real Granian: a silent peer, a peer that reads nothing, and a server that shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import websockets
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from domain.events.bus import EventBus, user_channel
from infra.settings import Settings
from tests.integration.support import Account
from tests.integration.ws_support import (
    RawClient,
    close_code,
    close_code_of,
    connected,
    events_until,
    live_server,
    metric,
    receive,
    scrape,
    subscribe,
)

pytestmark = pytest.mark.slow

HEARTBEAT_S = 0.3
BACKLOG = 256


def token(account: Account) -> str:
    return account.headers["Authorization"].removeprefix("Bearer ")


async def test_a_peer_that_stops_answering_heartbeats_is_closed_and_freed(
    settings: Settings, tmp_path: Path, alice: Account
) -> None:
    with live_server(settings, tmp_path, workers=1, WS_HEARTBEAT_S=str(HEARTBEAT_S)) as server:
        url = server.url(token(alice))
        async with connected(url, ping_interval=None) as silent, connected(url, ping_interval=None) as answering:
            pongs: asyncio.Queue[dict[str, object]] = asyncio.Queue()

            async def answer_every_ping() -> None:
                while True:
                    frame = await receive(answering)
                    if frame == {"type": "ping"}:
                        await answering.send(json.dumps({"op": "pong"}))
                    else:
                        pongs.put_nowait(frame)

            answerer = asyncio.create_task(answer_every_ping())
            started = time.monotonic()
            pings = await pings_until_closed(silent)
            took = time.monotonic() - started
            await asyncio.sleep(4 * HEARTBEAT_S)
            await answering.send(json.dumps({"op": "ping"}))
            assert await asyncio.wait_for(pongs.get(), 5) == {"type": "pong"}, "a peer that answers stays open"
            answerer.cancel()
        await asyncio.sleep(0.3)
        metrics = await scrape(server)
    assert pings == ["ping", "ping", 4408], "closed after two unanswered pings"
    assert 1.5 * HEARTBEAT_S <= took < 4 * HEARTBEAT_S + 1
    assert metric(metrics, "roi_ws_disconnects_total", reason="heartbeat") == 1
    assert metric(metrics, "roi_ws_connections") == 0, "both sockets' resources are gone"


async def pings_until_closed(ws: ClientConnection) -> list[object]:
    """The frame types a silent client receives, then its close code."""
    seen: list[object] = []
    try:
        while True:
            seen.append((await receive(ws, 5.0))["type"])
    except websockets.ConnectionClosed as closed:
        seen.append(closed.rcvd.code if closed.rcvd else None)
    return seen


async def test_a_consumer_that_does_not_read_is_closed_with_4008_and_recovers_the_rest(
    settings: Settings, tmp_path: Path, alice: Account, redis: Redis
) -> None:
    channel = user_channel(alice.id)
    total = 3000
    bus = EventBus(redis, settings.redis_namespace, history_size=total * 2)
    padding = "x" * 8000
    with live_server(settings, tmp_path, workers=2, WS_SEND_BACKLOG=str(BACKLOG)) as server:
        slow = RawClient(server.server.address, f"/ws?token={token(alice)}")
        try:
            slow.send_text(json.dumps({"op": "subscribe", "channel": channel, "since": 0}))
            handshake = []
            for _, payload in slow.frames():
                handshake.append(json.loads(payload))
                if handshake[-1]["type"] == "subscribed":
                    break
            async with connected(server.url(token(alice)), max_queue=None) as fast:
                await subscribe(fast, channel, since=0)
                started = time.monotonic()
                reading = asyncio.create_task(events_until(fast, lambda frame: frame["seq"] == total))
                for n in range(total):
                    await bus.publish(channel, "workflow.progress", {"n": n, "padding": padding})
                everything = await reading
                fast_took = time.monotonic() - started
            assert [frame["seq"] for frame in everything] == list(range(1, total + 1)), "others lose nothing"

            frames = list(slow.frames())
        finally:
            slow.close()
        opcode, payload = frames[-1]
        assert (opcode, close_code(payload)) == (0x8, 4008), "told to reconnect, not silently cut"
        received = [json.loads(p)["seq"] for op, p in frames[:-1] if op == 0x1 and b'"type":"event"' in p]
        assert received == list(range(1, len(received) + 1)), "what it got is in order, without gaps"
        assert len(received) < total

        async with connected(server.url(token(alice))) as again:
            resumed = await subscribe(again, channel, since=received[-1] if received else 0)
            rest = await events_until(again, lambda frame: frame["seq"] == total)
        assert resumed["recovered"] is True
        assert [frame["seq"] for frame in rest] == list(range(len(received) + 1, total + 1))

        await asyncio.sleep(1.2)
        metrics = await scrape(server)
    assert metric(metrics, "roi_ws_disconnects_total", reason="slow_consumer") == 1
    assert metric(metrics, "roi_ws_messages_dropped_total") >= 1
    assert metric(metrics, "roi_ws_backlog_high_water") >= BACKLOG
    assert fast_took < 30


async def test_shutdown_closes_sockets_with_1001_and_clients_recover_from_the_next_server(
    settings: Settings, tmp_path: Path, alice: Account, redis: Redis
) -> None:
    channel = user_channel(alice.id)
    bus = EventBus(redis, settings.redis_namespace)
    for n in range(5):
        await bus.publish(channel, "workflow.progress", {"n": n})
    with live_server(settings, tmp_path / "first", workers=2) as first:
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(connected(first.url(token(alice)))) for _ in range(8)]
            for ws in sockets:
                await subscribe(ws, channel, since=5)
            os.kill(first.server.pid, signal.SIGTERM)
            codes = [await close_code_of(ws) for ws in sockets]
        assert codes == [1001] * len(sockets)
    for n in range(5, 9):
        await bus.publish(channel, "workflow.progress", {"n": n})
    with live_server(settings, tmp_path / "second", workers=2) as second:
        async with connected(second.url(token(alice))) as ws:
            answer = await subscribe(ws, channel, since=5)
            missed = await events_until(ws, lambda frame: frame["seq"] == 9)
    assert answer["recovered"] is True
    assert [frame["seq"] for frame in missed] == [6, 7, 8, 9]
