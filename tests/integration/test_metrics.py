"""/metrics: request and cache counters, pool gauges, and the gauges later capabilities feed."""

from __future__ import annotations

from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.jobs_support import start_run, wait_until
from tests.integration.support import Account
from tests.integration.test_workflows import create


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(exposition: str, name: str, **labels: str) -> float:
    return samples(exposition).get((name, frozenset(labels.items())), 0.0)


async def test_requests_are_counted_by_route_template_and_status(client: AsyncTestClient, alice: Account) -> None:
    labels = {"method": "GET", "path": "/api/workflows/{workflow_id}"}
    before = (await client.get("/metrics")).text
    missing = "/api/workflows/00000000-0000-0000-0000-000000000000"
    for _ in range(3):
        assert (await client.get(missing, headers=alice.headers)).status_code == 404
    for _ in range(2):
        assert (await client.get(missing)).status_code == 401
    for _ in range(4):
        assert (await client.request("BREW", "/no/such/path")).status_code == 404
    after = (await client.get("/metrics")).text

    unmatched = {"method": "OTHER", "path": "<unmatched>"}
    for series, status, sent in ((labels, "404", 3), (labels, "401", 2), (unmatched, "404", 4)):
        counted = value(after, "roi_requests_total", **series, status_code=status)
        assert counted - value(before, "roi_requests_total", **series, status_code=status) == sent, (series, status)
        timed = value(after, "roi_request_duration_seconds_count", **series, status_code=status)
        assert timed - value(before, "roi_request_duration_seconds_count", **series, status_code=status) == sent


async def test_cache_lookups_are_counted_by_family_and_outcome(client: AsyncTestClient, alice: Account) -> None:
    before = (await client.get("/metrics")).text
    for _ in range(3):
        assert (await client.get("/api/agents", headers=alice.headers)).status_code == 200
    after = (await client.get("/metrics")).text

    def lookups(exposition: str, outcome: str) -> float:
        return value(exposition, "roi_cache_requests_total", family="agents", outcome=outcome)

    assert lookups(after, "hit") + lookups(after, "miss") - lookups(before, "hit") - lookups(before, "miss") == 3
    assert lookups(after, "hit") > lookups(before, "hit")
    assert ("roi_cache_requests_total", frozenset({("family", "workflow_status"), ("outcome", "fallback")})) in samples(
        after
    )


async def test_pool_gauges_and_the_registered_gauges_are_exported(client: AsyncTestClient) -> None:
    exposition = (await client.get("/metrics")).text
    assert value(exposition, "roi_db_pool_size", pool="asyncpg") >= 1
    assert ("roi_db_pool_in_use", frozenset({("pool", "orm")})) in samples(exposition)
    assert ("roi_db_pool_overflow", frozenset({("pool", "orm")})) in samples(exposition)
    assert value(exposition, "roi_requests_in_progress") == 1, "the scrape itself"
    assert ("roi_ws_connections", frozenset()) in samples(exposition)
    assert "# TYPE roi_queue_depth gauge" in exposition
    assert "# TYPE roi_slow_queries_total counter" in exposition


async def test_queue_depth_is_exported_per_priority_lane(client: AsyncTestClient, alice: Account) -> None:
    workflow = await create(client, alice, priority="high")
    await start_run(client, alice, workflow["id"])  # no worker runs: the job waits in its lane

    async def high_lane_shows_it() -> bool:
        return value((await client.get("/metrics")).text, "roi_queue_depth", queue="high") == 1.0

    await wait_until(high_lane_shows_it, "the queue-depth gauge shows the waiting high job", deadline_s=5)
    exposition = (await client.get("/metrics")).text
    assert ("roi_queue_depth", frozenset({("queue", "low")})) in samples(exposition)
    assert value(exposition, "roi_queue_depth", queue="low") == 0.0
