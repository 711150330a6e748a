"""Results: per-round measurements pooled into medians and percentiles, judged against the floor and the goals."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import msgspec
import redis.asyncio

from app.bench.loadgen import Measurement
from app.bench.scenarios import FLOOR, Goal, Scenario
from db.pools import asyncpg_dsn

PACKAGES = ("litestar", "granian", "uvloop", "msgspec", "asyncpg", "sqlalchemy", "advanced-alchemy", "redis")


class Machine(msgspec.Struct):
    """`load_average_before` (1, 5, 15 min) shows other work that shared the cores with this run."""

    cores: int
    cpu: str
    platform: str
    python: str
    packages: dict[str, str]
    postgresql: str
    redis: str
    load_average_before: list[float]


class RunSettings(msgspec.Struct):
    workers: int
    connections: int
    duration_s: float
    warmup_s: float
    rounds: int
    seeded_workflows: int
    steps_in_detail: int
    load_generator: str = "Python asyncio protocols on uvloop, HTTP/1.1 keep-alive, in the roi bench process"


class ScenarioResult(msgspec.Struct):
    """req/s is the median of the rounds; the percentiles pool every round's latencies."""

    name: str
    service: str
    request: str
    requests_per_s: float
    requests_per_s_by_round: list[float]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    errors: int
    requests_per_s_vs_floor: float
    p95_vs_floor: float
    client_cpu_cores: float
    server_cpu_cores: float
    server_cpu_us_per_request: float


class GoalResult(msgspec.Struct):
    issue: int
    scenario: str
    goal: str
    requests_per_s_vs_floor: float
    p50_ms: float
    p95_ms: float
    passed: bool


class Report(msgspec.Struct):
    started_at: datetime.datetime
    machine: Machine
    settings: RunSettings
    scenarios: list[ScenarioResult]
    goals: list[GoalResult]
    notes: list[str] = []
    """What the table's columns cannot hold (MB/s, peak memory), printed under it."""


def summarize(scenarios: list[Scenario], rounds: dict[str, list[Measurement]]) -> list[ScenarioResult]:
    """One result per scenario, each compared with the floor measured in the same rounds."""
    results = [_pooled(scenario, rounds[scenario.name]) for scenario in scenarios]
    floor = next(result for result in results if result.name == FLOOR)
    for result in results:
        result.requests_per_s_vs_floor = _ratio(result.requests_per_s, floor.requests_per_s)
        result.p95_vs_floor = _ratio(result.p95_ms, floor.p95_ms)
    return results


def _pooled(scenario: Scenario, measurements: list[Measurement]) -> ScenarioResult:
    latencies_ms = sorted(latency * 1000 for m in measurements for latency in m.latencies_s)
    rates = [m.requests / m.elapsed_s for m in measurements]
    requests = sum(m.requests for m in measurements)
    return ScenarioResult(
        name=scenario.name,
        service=scenario.service,
        request=f"{scenario.method} {scenario.path}",
        requests_per_s=statistics.median(rates),
        requests_per_s_by_round=rates,
        p50_ms=percentile(latencies_ms, 0.50),
        p95_ms=percentile(latencies_ms, 0.95),
        p99_ms=percentile(latencies_ms, 0.99),
        requests=requests,
        errors=sum(m.errors for m in measurements),
        requests_per_s_vs_floor=math.nan,
        p95_vs_floor=math.nan,
        client_cpu_cores=statistics.median(m.client_cpu_s / m.elapsed_s for m in measurements),
        server_cpu_cores=statistics.median(m.server_cpu_s / m.elapsed_s for m in measurements),
        server_cpu_us_per_request=1e6 * sum(m.server_cpu_s for m in measurements) / max(1, requests),
    )


@dataclass(frozen=True)
class Round:
    """One round of a row that is not HTTP requests (jobs, WebSocket events): `rated` per second is its rate,
    `served` the units its server CPU is divided by."""

    latencies_ms: list[float]
    rated: int
    served: int
    errors: int
    elapsed_s: float
    client_cpu_s: float
    server_cpu_s: float


def pooled_result(name: str, service: str, request: str, rounds: list[Round], floor: ScenarioResult) -> ScenarioResult:
    """Rounds pooled like the HTTP rows: median rate per round, percentiles over every latency."""
    latencies_ms = sorted(latency for one in rounds for latency in one.latencies_ms)
    rates = [one.rated / one.elapsed_s for one in rounds]
    served = sum(one.served for one in rounds)
    p95_ms = percentile(latencies_ms, 0.95)
    return ScenarioResult(
        name=name,
        service=service,
        request=request,
        requests_per_s=statistics.median(rates),
        requests_per_s_by_round=rates,
        p50_ms=percentile(latencies_ms, 0.50),
        p95_ms=p95_ms,
        p99_ms=percentile(latencies_ms, 0.99),
        requests=served,
        errors=sum(one.errors for one in rounds),
        requests_per_s_vs_floor=statistics.median(rates) / floor.requests_per_s,
        p95_vs_floor=p95_ms / floor.p95_ms,
        client_cpu_cores=statistics.median(one.client_cpu_s / one.elapsed_s for one in rounds),
        server_cpu_cores=statistics.median(one.server_cpu_s / one.elapsed_s for one in rounds),
        server_cpu_us_per_request=1e6 * sum(one.server_cpu_s for one in rounds) / max(1, served),
    )


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest rank: a latency that was actually observed."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _ratio(value: float, floor: float) -> float:
    return value / floor if floor else math.nan


def judge(goals: tuple[Goal, ...], results: list[ScenarioResult]) -> list[GoalResult]:
    """The goals whose scenario ran in this bench; a goal fails on any error response too."""
    by_name = {result.name: result for result in results}
    return [
        GoalResult(
            issue=goal.issue,
            scenario=goal.scenario,
            goal=_goal_text(goal),
            requests_per_s_vs_floor=result.requests_per_s_vs_floor,
            p50_ms=result.p50_ms,
            p95_ms=result.p95_ms,
            passed=result.requests_per_s_vs_floor >= goal.min_floor_ratio
            and result.p50_ms <= goal.max_p50_ms
            and result.p95_ms < goal.max_p95_ms
            and not result.errors,
        )
        for goal in goals
        if (result := by_name.get(goal.scenario)) is not None
    ]


def _goal_text(goal: Goal) -> str:
    limits = [f"req/s >= {goal.min_floor_ratio:.0%} of {goal.floor}"]
    if math.isfinite(goal.max_p50_ms):
        limits.append(f"median <= {goal.max_p50_ms:g} ms")
    if math.isfinite(goal.max_p95_ms):
        limits.append(f"p95 < {goal.max_p95_ms:g} ms")
    return ", ".join(limits)


def table(report: Report) -> str:
    """The results as aligned text, then one line per goal."""
    header = "scenario req/s p50_ms p95_ms p99_ms req/s÷floor p95÷floor errors server_CPU server_µs/req client_CPU"
    header_cells = tuple(cell.replace("_", " ") for cell in header.split())
    rows = [
        (
            r.name,
            f"{r.requests_per_s:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p95_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.requests_per_s_vs_floor:.1%}",
            f"{r.p95_vs_floor:.2f}x",
            str(r.errors),
            f"{r.server_cpu_cores:.2f} cores",
            f"{r.server_cpu_us_per_request:,.0f}",
            f"{r.client_cpu_cores:.2f} cores",
        )
        for r in report.scenarios
    ]
    widths = [max(len(row[i]) for row in [header_cells, *rows]) for i in range(len(header_cells))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header_cells, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    s = report.settings
    lines.insert(
        0,
        f"{s.workers} Granian workers, {s.connections} connections; per scenario {s.rounds} interleaved rounds x "
        f"{s.duration_s:g} s, each after a {s.warmup_s:g} s warm-up; floor = {FLOOR}",
    )
    for goal in report.goals:
        verdict = "PASS" if goal.passed else "FAIL"
        lines.append(
            f"{verdict}  issue {goal.issue}: {goal.scenario}: {goal.goal} "
            f"(got {goal.requests_per_s_vs_floor:.1%}, p50 {goal.p50_ms:.1f} ms, p95 {goal.p95_ms:.1f} ms)"
        )
    lines += report.notes
    return "\n".join(lines)


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")


async def describe_machine(database_url: str, redis_url: str, load_average_before: list[float]) -> Machine:
    """What the figures depend on: the cores the load generator shares with the server, and every version."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        postgresql: str = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        server_info = await client.info("server")
    finally:
        await client.aclose()
    return Machine(
        cores=os.cpu_count() or 1,
        cpu=_cpu_model(),
        platform=platform.platform(),
        python=platform.python_version(),
        packages={name: importlib.metadata.version(name) for name in PACKAGES},
        postgresql=postgresql,
        redis=_redis_server(server_info),
        load_average_before=load_average_before,
    )


def _cpu_model() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    return models[0] if models else platform.processor()


def _redis_server(server_info: dict[str, object]) -> str:
    if "valkey_version" in server_info:
        return f"valkey {server_info['valkey_version']}"
    return f"redis {server_info['redis_version']}"
