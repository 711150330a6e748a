"""Events over /ws on a real Granian with 2 workers: order, replay after `since`, recovery across reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from domain.events.bus import EventBus, EventKeys, user_channel, workflow_channel
from infra.settings import Settings
from tests.integration.jobs_support import TERMINAL, running_worker, start_run, wait_until, worker_config
from tests.integration.support import Account
from tests.integration.test_workflows import create
from tests.integration.ws_support import (
    LiveServer,
    close_code_of,
    connected,
    events_until,
    live_server,
    receive,
    request,
    subscribe,
)

pytestmark = pytest.mark.slow

LONG_RUN = {"discount_rate": 0.08, "simulations": 1_000_000, "volatility": 0.2, "seed": 1}
"""Long enough (a second or more) for progress events to pass while a client is away."""


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(settings, tmp_path_factory.mktemp("ws-delivery")) as running:
        yield running


def token(account: Account) -> str:
    return account.headers["Authorization"].removeprefix("Bearer ")


def finished(frame: dict[str, Any]) -> bool:
    return frame["event"] == "workflow.status" and frame["data"]["status"] in TERMINAL


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [frame["seq"] for frame in frames]


async def test_a_real_run_arrives_in_order_with_seq_rising_by_one(
    server: LiveServer, client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    workflow = await create(client, alice, cash_flows=[-1000.0, 300.0, 400.0, 500.0])
    async with connected(server.url(token(alice))) as ws, connected(server.url(token(alice))) as mine:
        await subscribe(ws, workflow_channel(workflow["id"]), since=0)
        await subscribe(mine, user_channel(alice.id), since=0)
        async with running_worker(worker_config(settings)):
            await start_run(client, alice, workflow["id"])
            frames = await events_until(ws, finished)
            statuses = await events_until(mine, finished)

    assert seqs(frames) == list(range(1, len(frames) + 1))
    assert (frames[0]["event"], frames[0]["data"]["status"]) == ("workflow.status", "queued"), "from the API"
    assert frames[-1]["data"]["status"] == "succeeded", "from the worker"
    kinds = [(f["data"]["kind"], f["data"]["status"]) for f in frames if f["event"] == "step.status"]
    assert kinds == [(k, s) for k in ("ingest", "validate", "analyze", "report") for s in ("running", "succeeded")]
    assert [f["data"]["status"] for f in statuses] == ["queued", "running", "succeeded"]
    assert seqs(statuses) == list(range(1, len(statuses) + 1))


async def test_a_client_that_reconnects_with_since_mid_run_misses_nothing(
    server: LiveServer, client: AsyncTestClient, alice: Account, settings: Settings, redis: Redis
) -> None:
    workflow = await create(client, alice, cash_flows=[-1000.0, *[120.0] * 40], parameters=LONG_RUN)
    channel = workflow_channel(workflow["id"])
    sequence_key = EventKeys(settings.redis_namespace).sequence(channel)
    async with running_worker(worker_config(settings)):
        async with connected(server.url(token(alice))) as ws:
            await subscribe(ws, channel, since=0)
            await start_run(client, alice, workflow["id"])
            before = [await receive(ws) for _ in range(3)]
            assert ws.transport is not None
            ws.transport.abort()  # the network drops: no closing handshake
        last_seen = before[-1]["seq"]

        async def events_passed() -> bool:
            return int(await redis.get(sequence_key) or 0) >= last_seen + 3

        await wait_until(events_passed, "three events were published while the client was away")
        async with connected(server.url(token(alice))) as ws:
            subscribed = await subscribe(ws, channel, since=last_seen)
            after = await events_until(ws, finished, timeout_s=60)

    assert subscribed["recovered"] is True
    assert seqs(before) + seqs(after) == list(range(1, after[-1]["seq"] + 1)), "every event once, in order"
    replayed = [frame for frame in after if frame["seq"] <= subscribed["seq"]]
    live = [frame for frame in after if frame["seq"] > subscribed["seq"]]
    assert len(replayed) >= 3, "what passed while away came from history"
    assert live, "then live ones (the run was still going)"
    assert after[-1]["data"]["status"] == "succeeded"


async def test_subscribing_while_events_stream_in_gives_each_exactly_once(
    server: LiveServer, alice: Account, redis: Redis, settings: Settings
) -> None:
    """The subscribe/replay race: live frames that are also in the replay are sent once."""
    channel = user_channel(alice.id)
    bus = EventBus(redis, settings.redis_namespace)
    total = 600

    async def publish_all() -> None:
        for n in range(total):
            await bus.publish(channel, "workflow.progress", {"n": n})

    keys = EventKeys(settings.redis_namespace)
    for _ in range(3):
        await redis.delete(keys.sequence(channel), keys.history(channel))
        publishing = asyncio.create_task(publish_all())
        await asyncio.sleep(0.05)
        async with connected(server.url(token(alice))) as ws:
            since = int(await redis.get(keys.sequence(channel)) or 0) // 2
            await subscribe(ws, channel, since=since)
            frames = await events_until(ws, lambda frame: frame["seq"] == total)
        await publishing
        assert seqs(frames) == list(range(since + 1, total + 1))


async def test_recovered_is_false_when_history_no_longer_reaches_back(
    server: LiveServer, alice: Account, redis: Redis, settings: Settings
) -> None:
    channel = user_channel(alice.id)
    small = EventBus(redis, settings.redis_namespace, history_size=10)
    for n in range(300):
        await small.publish(channel, "workflow.progress", {"n": n})
    async with connected(server.url(token(alice))) as ws:
        trimmed = await subscribe(ws, channel, since=0)
        kept = await events_until(ws, lambda frame: frame["seq"] == 300)
        assert (trimmed["seq"], trimmed["recovered"]) == (300, False)
        assert seqs(kept) == list(range(kept[0]["seq"], 301)), "what is left, in order"
        assert kept[0]["seq"] > 1

        assert await subscribe(ws, channel, since=298) == {
            "type": "subscribed",
            "channel": channel,
            "seq": 300,
            "recovered": True,
        }
        assert seqs([await receive(ws), await receive(ws)]) == [299, 300]

        await redis.xtrim(EventKeys(settings.redis_namespace).history(channel), maxlen=0)
        assert (await subscribe(ws, channel, since=290))["recovered"] is False
        assert (await subscribe(ws, channel, since=300))["recovered"] is True, "nothing missed, nothing needed"
        await small.publish(channel, "workflow.progress", {"n": 300})
        assert (await receive(ws))["seq"] == 301


async def test_a_since_beyond_the_channel_means_its_numbering_restarted(
    server: LiveServer, alice: Account, redis: Redis, settings: Settings
) -> None:
    channel = user_channel(alice.id)
    async with connected(server.url(token(alice))) as ws:
        answer = await subscribe(ws, channel, since=40)
        assert (answer["seq"], answer["recovered"]) == (0, False)
        await EventBus(redis, settings.redis_namespace).publish(channel, "workflow.status", {"status": "queued"})
        assert (await receive(ws))["seq"] == 1, "live events still come, numbered anew"


async def test_a_lost_redis_subscription_closes_sockets_with_1012_and_they_recover(
    server: LiveServer, alice: Account, redis: Redis, settings: Settings
) -> None:
    channel = user_channel(alice.id)
    bus = EventBus(redis, settings.redis_namespace)
    for n in range(2):
        await bus.publish(channel, "workflow.progress", {"n": n})
    async with connected(server.url(token(alice))) as ws:
        await subscribe(ws, channel, since=0)
        assert seqs([await receive(ws), await receive(ws)]) == [1, 2]
        hubs = [c for c in await redis.client_list() if c["name"] == f"roi-events-hub:{settings.redis_namespace}"]
        assert len(hubs) >= 2, "one subscription connection per server process"
        for hub in hubs:
            await redis.client_kill_filter(_id=hub["id"])
        code = await close_code_of(ws)
    assert code == 1012, "told to reconnect: events may have been missed"
    for n in range(2, 4):
        await bus.publish(channel, "workflow.progress", {"n": n})

    async def resubscribed() -> bool:
        async with connected(server.url(token(alice))) as again:
            answer = await request(again, {"op": "subscribe", "channel": channel, "since": 2})
            if answer["type"] != "subscribed":
                assert answer["code"] == "unavailable", answer
                return False
            assert answer["recovered"] is True
            assert seqs([await receive(again), await receive(again)]) == [3, 4]
            return True

    await wait_until(resubscribed, "the hub reconnected to Redis", deadline_s=10)
