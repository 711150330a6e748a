"""Every custom Prometheus metric, in one place; `/metrics` sums them over all worker processes.

`roi serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, so each process
writes its samples there and the Litestar `PrometheusController` of whichever worker is asked adds them up.
Gauges therefore say how processes combine: `livesum` for per-process amounts, `mostrecent` for a value
every process observes the same.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar
from prometheus_client import Counter, Gauge, Histogram, multiprocess
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.events.stats import LiveStats
from domain.services import provide_services
from infra.closing import cancel_and_wait, raise_if_cancelled
from infra.queue import PriorityRedisQueue
from infra.redis import REDIS_FAILURES

CACHE_FAMILIES = ("workflow_status", "workflow_list", "agents")
CACHE_OUTCOMES = ("hit", "miss", "fallback")
POOL_SAMPLE_INTERVAL_S = 1.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Any other method is counted as OTHER: label values must not be the client's to invent."""

REQUESTS = Counter("roi_requests", "Requests by method, route template and status", ["method", "path", "status_code"])
REQUEST_DURATION = Histogram(
    "roi_request_duration_seconds",
    "Request duration by method, route template and status",
    ["method", "path", "status_code"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS_REFUSED = Counter("roi_requests_refused", "Requests refused with 503 at capacity (API_MAX_IN_FLIGHT)")
REQUESTS_IN_PROGRESS = Gauge("roi_requests_in_progress", "Requests being served", multiprocess_mode="livesum")
CACHE_REQUESTS = Counter(
    "roi_cache_requests",
    "Redis cache lookups by key family: hit, miss, or fallback to PostgreSQL",
    ["family", "outcome"],
)
SLOW_QUERIES = Counter(
    "roi_slow_queries", "Statements slower than SLOW_QUERY_MS, by fingerprint of the normalised text", ["fingerprint"]
)
DB_POOL_SIZE = Gauge("roi_db_pool_size", "Open connections per pool", ["pool"], multiprocess_mode="livesum")
DB_POOL_IN_USE = Gauge("roi_db_pool_in_use", "Checked-out connections per pool", ["pool"], multiprocess_mode="livesum")
DB_POOL_OVERFLOW = Gauge(
    "roi_db_pool_overflow", "ORM connections open beyond its pool size", ["pool"], multiprocess_mode="livesum"
)
WS_CONNECTIONS = Gauge("roi_ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
WS_CONNECTS = Counter("roi_ws_connects", "WebSocket upgrades by outcome", ["outcome"])
WS_DISCONNECTS = Counter("roi_ws_disconnects", "Closed WebSocket connections by reason", ["reason"])
WS_SUBSCRIBES = Counter("roi_ws_subscribes", "Subscribe requests by outcome", ["outcome"])
WS_SUBSCRIPTIONS = Gauge("roi_ws_subscriptions", "Active channel subscriptions", multiprocess_mode="livesum")
WS_MESSAGES_SENT = Counter("roi_ws_messages_sent", "WebSocket frames sent (events, replays, control)")
WS_MESSAGES_DROPPED = Counter("roi_ws_messages_dropped", "Event frames not sent: the socket's backlog overflowed")
WS_BACKLOG_HIGH_WATER = Gauge(
    "roi_ws_backlog_high_water", "Deepest per-socket send backlog seen by any process", multiprocess_mode="max"
)
WS_DELIVERY_LATENCY = Histogram(
    "roi_ws_delivery_latency_seconds", "Publish to send of live events", buckets=LATENCY_BUCKETS
)
QUEUE_DEPTH = Gauge("roi_queue_depth", "Jobs waiting, per priority lane", ["queue"], multiprocess_mode="mostrecent")

_cache_series: dict[tuple[str, str], Counter] = {  # every series exists from the start: rates begin at zero
    (family, outcome): CACHE_REQUESTS.labels(family, outcome) for family in CACHE_FAMILIES for outcome in CACHE_OUTCOMES
}

_request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, duration_s: float) -> None:
    """Count one finished HTTP request; `route` is the template, or `<unmatched>`.

    The labelled children are kept (`.labels()` costs more than the increment): routes x methods x statuses is small.
    """
    method = method if method in METHODS else "OTHER"
    series = _request_series.get((method, route, status))
    if series is None:
        labels = (method, route, str(status))
        series = _request_series[method, route, status] = (REQUESTS.labels(*labels), REQUEST_DURATION.labels(*labels))
    series[0].inc()
    series[1].observe(duration_s)


def count_cache_request(family: str, outcome: str) -> None:
    """Record one cache lookup; `family` is one of CACHE_FAMILIES, `outcome` one of CACHE_OUTCOMES."""
    series = _cache_series.get((family, outcome))
    if series is None:
        series = _cache_series[family, outcome] = CACHE_REQUESTS.labels(family, outcome)
    series.inc()


class PrometheusLiveStats(LiveStats):
    """The /ws endpoint's callbacks, into the metrics above."""

    def connected(self, outcome: str) -> None:
        WS_CONNECTS.labels(outcome).inc()

    def disconnected(self, reason: str) -> None:
        WS_DISCONNECTS.labels(reason).inc()

    def open_sockets(self, delta: int) -> None:
        WS_CONNECTIONS.inc(delta)

    def subscribed(self, outcome: str) -> None:
        WS_SUBSCRIBES.labels(outcome).inc()

    def active_subscriptions(self, delta: int) -> None:
        WS_SUBSCRIPTIONS.inc(delta)

    def sent(self, count: int) -> None:
        WS_MESSAGES_SENT.inc(count)

    def dropped(self, count: int) -> None:
        WS_MESSAGES_DROPPED.inc(count)

    def backlog_high_water(self, depth: int) -> None:
        WS_BACKLOG_HIGH_WATER.set(depth)

    def delivered(self, latency_s: float) -> None:
        WS_DELIVERY_LATENCY.observe(latency_s)


def count_slow_query(fingerprint: str) -> None:
    SLOW_QUERIES.labels(fingerprint).inc()


def sample_pools(engine: AsyncEngine, asyncpg_pool: asyncpg.Pool) -> None:
    orm = engine.pool
    checked_out: int = orm.checkedout()  # type: ignore[attr-defined]
    DB_POOL_IN_USE.labels("orm").set(checked_out)
    DB_POOL_SIZE.labels("orm").set(checked_out + orm.checkedin())  # type: ignore[attr-defined]
    DB_POOL_OVERFLOW.labels("orm").set(max(0, orm.overflow()))  # type: ignore[attr-defined]
    DB_POOL_IN_USE.labels("asyncpg").set(asyncpg_pool.get_size() - asyncpg_pool.get_idle_size())
    DB_POOL_SIZE.labels("asyncpg").set(asyncpg_pool.get_size())


async def sample_queue_depth(queue: PriorityRedisQueue) -> None:
    """Jobs waiting per lane; skipped while Redis does not answer (the gauge keeps its last value)."""
    try:
        depths = await queue.depths()
    except REDIS_FAILURES:
        return
    for lane, depth in depths.items():
        QUEUE_DEPTH.labels(lane).set(depth)


@asynccontextmanager
async def pool_metrics(app: Litestar) -> AsyncIterator[None]:
    """A lifespan that samples this process's pools every second, after the `services` lifespan opened them.

    Sampled on an interval rather than at scrape time: the process answering /metrics cannot sample the others.
    """
    services = provide_services(app.state)

    async def sample_forever() -> None:
        while True:
            await asyncio.sleep(POOL_SAMPLE_INTERVAL_S)
            sample_pools(services.engine, services.asyncpg_pool)
            await sample_queue_depth(services.queue)
            raise_if_cancelled()

    sample_pools(services.engine, services.asyncpg_pool)  # the series exist from the first scrape on
    await sample_queue_depth(services.queue)
    sampler = asyncio.create_task(sample_forever())
    try:
        yield
    finally:
        await cancel_and_wait(sampler)
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # leave the livesums
