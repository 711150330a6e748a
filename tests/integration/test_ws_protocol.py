"""/ws on a real Granian with 2 workers: tokens, the frames of the contract, authorisation per subscription."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import websockets
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from domain.events.bus import EventBus, user_channel, workflow_channel
from infra.settings import Settings
from tests.integration.support import Account
from tests.integration.test_workflows import create
from tests.integration.ws_support import (
    LiveServer,
    close_code_of,
    connected,
    live_server,
    metric,
    receive,
    request,
    scrape,
    subscribe,
    token_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(settings, tmp_path_factory.mktemp("ws-protocol")) as running:
        yield running


def bearer(account: Account) -> str:
    return account.headers["Authorization"].removeprefix("Bearer ")


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_a_connection_without_a_valid_token_is_accepted_then_closed_with_4401(
    server: LiveServer, token: str | None
) -> None:
    async with websockets.connect(server.url(token)) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401, "a browser's onclose can tell a refused token from a network failure"
    assert "sign in again" in closed.value.rcvd.reason


async def test_an_expired_token_is_closed_with_4401(server: LiveServer, settings: Settings, alice: Account) -> None:
    async with websockets.connect(server.url(token_for(settings, alice.id, -5))) as ws:
        assert await close_code_of(ws) == 4401


async def test_welcome_then_ping_pong_and_errors_that_leave_the_connection_open(
    server: LiveServer, alice: Account
) -> None:
    async with websockets.connect(server.url(), additional_headers=alice.headers) as ws:
        welcome = await receive(ws)
        assert welcome["type"] == "welcome"
        assert welcome["heartbeat_s"] == 20.0
        assert isinstance(welcome["connection_id"], str)
        assert welcome["connection_id"]

        assert await request(ws, {"op": "ping"}) == {"type": "pong"}
        assert (await request(ws, "{not json"))["code"] == "invalid_json"
        assert (await request(ws, {"op": "dance"}))["code"] == "unknown_op"
        assert (await request(ws, {"op": "subscribe"}))["code"] == "invalid_message"
        assert (await request(ws, {"op": "subscribe", "channel": f"user:{alice.id}", "since": -1}))[
            "code"
        ] == "invalid_message"
        invalid = await request(ws, {"op": "subscribe", "channel": "weather:today"})
        assert (invalid["type"], invalid["code"], invalid["channel"]) == ("error", "invalid_channel", "weather:today")
        assert await request(ws, {"op": "ping"}) == {"type": "pong"}, "still usable after every error"


async def test_subscribe_and_unsubscribe_answer_as_the_contract_says(
    server: LiveServer, client: AsyncTestClient, alice: Account, redis: Redis, settings: Settings
) -> None:
    workflow = await create(client, alice)
    channel = workflow_channel(workflow["id"])
    bus = EventBus(redis, settings.redis_namespace)
    async with connected(server.url(bearer(alice))) as ws:
        assert await subscribe(ws, channel, since=0) == {
            "type": "subscribed",
            "channel": channel,
            "seq": 0,
            "recovered": True,
        }
        await bus.publish(channel, "workflow.progress", {"id": workflow["id"], "progress": 0.5})
        event = await receive(ws)
        assert event["type"] == "event"
        assert (event["channel"], event["seq"], event["event"]) == (channel, 1, "workflow.progress")
        assert event["data"] == {"id": workflow["id"], "progress": 0.5}
        assert event["ts"].endswith("Z")

        assert await request(ws, {"op": "unsubscribe", "channel": channel}) == {
            "type": "unsubscribed",
            "channel": channel,
        }
        await bus.publish(channel, "workflow.progress", {"id": workflow["id"], "progress": 0.6})
        assert await request(ws, {"op": "ping"}) == {"type": "pong"}, "no event after unsubscribing"


async def test_another_users_workflow_and_user_channel_are_forbidden_and_the_socket_stays_usable(
    server: LiveServer, client: AsyncTestClient, alice: Account, bob: Account
) -> None:
    bobs = await create(client, bob)
    alices = await create(client, alice)
    async with connected(server.url(bearer(alice))) as ws:
        for channel in (workflow_channel(bobs["id"]), user_channel(bob.id), "upload:" + bobs["id"]):
            refused = await request(ws, {"op": "subscribe", "channel": channel, "since": 0})
            assert (refused["type"], refused["code"], refused["channel"]) == ("error", "forbidden", channel)
        missing = await request(ws, {"op": "subscribe", "channel": workflow_channel(uuid.uuid4())})
        assert missing["code"] == "forbidden", "a workflow that does not exist looks like someone else's"
        assert (await subscribe(ws, workflow_channel(alices["id"])))["recovered"] is True
        assert (await subscribe(ws, user_channel(alice.id)))["channel"] == user_channel(alice.id)


async def test_a_channel_named_in_another_spelling_is_the_canonical_one(
    server: LiveServer, client: AsyncTestClient, alice: Account
) -> None:
    workflow = await create(client, alice)
    async with connected(server.url(bearer(alice))) as ws:
        answer = await subscribe(ws, f"workflow:{workflow['id'].upper()}")
        assert answer["channel"] == workflow_channel(workflow["id"])


async def test_a_token_that_expires_while_connected_closes_the_socket_with_4401(
    server: LiveServer, settings: Settings, alice: Account
) -> None:
    started = time.monotonic()
    async with connected(server.url(token_for(settings, alice.id, 1.5))) as ws:
        code = await close_code_of(ws)
    assert code == 4401
    assert 0.5 < time.monotonic() - started < 5


async def test_a_publish_reaches_sockets_in_both_worker_processes(
    server: LiveServer, alice: Account, redis: Redis, settings: Settings
) -> None:
    """New connections land on either worker; each process subscribes to Redis once and fans out."""
    channel = user_channel(alice.id)
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(connected(server.url(bearer(alice)))) for _ in range(16)]
        for ws in sockets:
            await subscribe(ws, channel)
        seq = await EventBus(redis, settings.redis_namespace).publish(channel, "workflow.status", {"status": "x"})
        frames = await asyncio.gather(*(receive(ws) for ws in sockets))
    assert {(frame["seq"], frame["event"]) for frame in frames} == {(seq, "workflow.status")}
    metrics = await scrape(server)
    assert metric(metrics, "roi_ws_connects_total", outcome="accepted") >= 16
    assert metric(metrics, "roi_ws_subscribes_total", outcome="ok") >= 16
    assert metric(metrics, "roi_ws_messages_sent_total") >= 0  # flushed once a second


async def test_the_token_in_the_query_is_never_logged(server: LiveServer, alice: Account) -> None:
    token = bearer(alice)
    async with connected(server.url(token)) as ws:
        await request(ws, {"op": "ping"})
    await asyncio.sleep(0.2)
    log = server.log.read_text()
    access = [json.loads(line) for line in log.splitlines() if '"roi.access"' in line and '"/ws"' in line]
    assert access, "the socket's access line names the route template"
    assert token not in log


async def test_metrics_count_sockets_and_disconnects(server: LiveServer, alice: Account) -> None:
    async with connected(server.url(bearer(alice))) as ws:
        await request(ws, {"op": "ping"})
        during = await scrape(server)
        assert metric(during, "roi_ws_connections") >= 1
    await asyncio.sleep(1.2)
    after = await scrape(server)
    assert metric(after, "roi_ws_disconnects_total", reason="client") >= 1
    assert metric(after, "roi_ws_messages_sent_total") >= 2, "welcome and pong, flushed within a second"
    assert "roi_ws_delivery_latency_seconds_bucket" in after or "roi_ws_delivery_latency_seconds" in after
