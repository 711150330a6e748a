"""Results: per-round measurements pooled into medians and percentiles, judged against the floor, the brief's
targets and the issues' goals; printed as one table and written as JSON."""

from __future__ import annotations

import datetime
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import msgspec

from bench.loadgen import Measurement
from bench.machine import Machine
from bench.scenarios import FLOOR, BriefTarget, Goal, Scenario


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
    p99_ms: float = math.nan
    p95_vs_floor: float = math.nan


class TargetResult(msgspec.Struct):
    """One row judged against one of the brief's targets."""

    what: str
    scenario: str
    target: str
    p95_ms: float
    errors: int
    passed: bool


class ProcessMemory(msgspec.Struct):
    """One server process through the mixed load: its resident memory (VmRSS) when the load starts, once warm, at
    the end, and every few seconds between; `peak_mib` is its VmHWM at the end."""

    role: str
    pid: int
    start_mib: float
    warm_mib: float
    end_mib: float
    peak_mib: float
    samples_mib: list[float]

    @property
    def growth_mib(self) -> float:
        return self.end_mib - self.warm_mib


class MixedReport(msgspec.Struct):
    """What the mixed load's rows cannot hold: its size, every failure, the events and each process's memory."""

    users: int
    duration_s: float
    warmup_s: float
    worker_processes: int
    http_requests: int
    requests: dict[str, int]
    """Per kind; an upload (POST and PATCH) and its wait until parsed are a kind each."""
    errors: dict[str, int]
    first_errors: list[str]
    events_published: int
    events_received: int
    events_missing: int
    events_out_of_order: int
    sockets_closed: int
    memory: list[ProcessMemory]
    flat_tolerance_mib: float
    """The most a process's RSS may grow from warm to the end and still count as flat."""

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values()) + self.events_missing + self.events_out_of_order + self.sockets_closed

    @property
    def flat(self) -> bool:
        return all(process.growth_mib <= self.flat_tolerance_mib for process in self.memory)


class CacheSpeedup(msgspec.Struct):
    """A cached row against the same request on the service without the cache (its `_uncached` twin)."""

    scenario: str
    requests_per_s: float
    """Cached req/s over uncached req/s."""
    p50_ms: float
    uncached_p50_ms: float
    server_cpu_us_per_request: float
    uncached_server_cpu_us_per_request: float


UNCACHED_SUFFIX = "_uncached"


def cache_speedups(results: list[ScenarioResult]) -> list[CacheSpeedup]:
    """Issue 3's "the cache's speed-up": each row measured both with and without the cache, in the same run."""
    by_name = {result.name: result for result in results}
    return [
        CacheSpeedup(
            scenario=cached.name,
            requests_per_s=_ratio(cached.requests_per_s, uncached.requests_per_s),
            p50_ms=cached.p50_ms,
            uncached_p50_ms=uncached.p50_ms,
            server_cpu_us_per_request=cached.server_cpu_us_per_request,
            uncached_server_cpu_us_per_request=uncached.server_cpu_us_per_request,
        )
        for cached in results
        if (uncached := by_name.get(cached.name + UNCACHED_SUFFIX)) is not None
    ]


class ScaleSize(msgspec.Struct):
    """One database of the scale scenario: its template, what the seed and the copy took, what a workflow weighs,
    and how deep its `scale_cursor_page` row reads."""

    label: str
    workflows: int
    shape: str
    template: str
    seeded_now: bool
    """False: the template was already there (seeded `seed_s` at `seeded_at`) and was only copied."""
    seed_s: float
    seeded_at: datetime.datetime
    upgraded_from: str | None
    """The template of an earlier schema this one was migrated from, instead of being seeded."""
    copy_s: float
    database_bytes: int
    bytes_per_workflow: float
    """roi_workflows and workflow_steps with their indexes and TOAST, over the workflows."""
    workflow_table_bytes: int
    workflow_index_bytes: int
    step_table_bytes: int
    step_index_bytes: int
    cursor_page: int
    """The page (of 50) `scale_cursor_page` reads, reached through the cursors of the pages before it."""
    pages: int
    """The pages of the big user's list."""
    cursor_walk_s: float
    answers: dict[str, str] = {}
    """Per read row, what it answers at this size: `scale_status_page: 15 items, 19.6 kB`."""


class ScaleRatio(msgspec.Struct):
    """A scale row at the large size against the same row at the small one."""

    scenario: str
    small: str
    large: str
    small_p50_ms: float
    large_p50_ms: float
    small_p95_ms: float
    large_p95_ms: float
    p95_ratio: float


class ScaleReport(msgspec.Struct):
    sizes: list[ScaleSize]
    read_connections: int
    write_connections: int
    ratios: list[ScaleRatio]


def scale_ratios(results: list[ScenarioResult], names: tuple[str, ...], small: str, large: str) -> list[ScaleRatio]:
    """Per scale row measured at both sizes (`<name>_<small>`, `<name>_<large>`): its p50s, p95s and the p95 ratio."""
    by_name = {result.name: result for result in results}
    return [
        ScaleRatio(
            scenario=name,
            small=low.name,
            large=high.name,
            small_p50_ms=low.p50_ms,
            large_p50_ms=high.p50_ms,
            small_p95_ms=low.p95_ms,
            large_p95_ms=high.p95_ms,
            p95_ratio=_ratio(high.p95_ms, low.p95_ms),
        )
        for name in names
        if (low := by_name.get(f"{name}_{small}")) is not None and (high := by_name.get(f"{name}_{large}")) is not None
    ]


class OverloadReport(msgspec.Struct):
    """The open-loop overload (bench/overload.py): what was offered, admitted and refused, and how it recovered."""

    target: str
    capacity_rps: float
    offered_rps: float
    duration_s: float
    sent: int
    admitted: int
    admitted_rps: float
    admitted_p50_ms: float
    admitted_p95_ms: float
    admitted_p99_ms: float
    refused: int
    refused_without_retry_after: int
    refused_p50_ms: float
    refused_p99_ms: float
    other_statuses: int
    timeouts: int
    resets: int
    connect_failures: int
    client_unsent: int
    normal_p95_ms: float
    recovery_s: float
    health_probes: int
    health_probe_failures: int
    health_probe_p99_ms: float
    worker_rss_before_mib: dict[str, float]
    worker_rss_peak_mib: dict[str, float]
    worker_rss_after_mib: dict[str, float]
    load_average_before: float
    load_average_during: float
    client_cpu_cores: float
    """The load generator's own CPU during the overload: near 1 core, it (one Python process) is the bottleneck."""


OVERLOAD_MAX_ADMITTED_P99_MS = 1000.0
OVERLOAD_MAX_RECOVERY_S = 2.0


class JobsDetail(msgspec.Struct):
    """What the job rows cannot hold: CPU per run by process, and the burst's lanes over time."""

    cpu_us_per_run: dict[str, dict[str, float]]
    """Row -> {"worker", "postgresql", "redis"} -> µs per run (median over rounds)."""
    throughput_vs_floor: float
    burst_last_started_s: list[float]
    burst_last_finished_s: list[float]
    burst_depths: list[list[float]]
    """[seconds since the first enqueue, high, normal, low] every 100 ms, the last round's."""
    idle_own_start_ms: list[float] = []
    """`jobs_start_idle`'s runs on the workflow's own timestamps (`started_at - queued_at`), sorted, every round's."""


class Report(msgspec.Struct):
    started_at: datetime.datetime
    machine: Machine
    settings: RunSettings
    scenarios: list[ScenarioResult]
    goals: list[GoalResult]
    notes: list[str] = []
    """What the table's columns cannot hold (MB/s, peak memory), printed under it."""
    brief: list[TargetResult] = []
    mixed: MixedReport | None = None
    cache_speedups: list[CacheSpeedup] = []
    scale: ScaleReport | None = None
    overload: OverloadReport | None = None
    jobs: JobsDetail | None = None


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
            goal=goal.describe(),
            requests_per_s_vs_floor=result.requests_per_s_vs_floor,
            p50_ms=result.p50_ms,
            p95_ms=result.p95_ms,
            p99_ms=result.p99_ms,
            p95_vs_floor=result.p95_vs_floor,
            passed=result.requests_per_s_vs_floor >= goal.min_floor_ratio
            and result.p50_ms <= goal.max_p50_ms
            and result.p95_ms <= goal.max_p95_ms
            and result.p99_ms <= goal.max_p99_ms
            and result.p95_vs_floor <= goal.max_p95_vs_floor
            and not result.errors,
        )
        for goal in goals
        if (result := by_name.get(goal.scenario)) is not None
    ]


def judge_brief(targets: tuple[BriefTarget, ...], results: list[ScenarioResult]) -> list[TargetResult]:
    """Every row that ran against the brief's target for it; like a goal, a target fails on any error too."""
    by_name = {result.name: result for result in results}
    return [
        TargetResult(
            what=target.what,
            scenario=name,
            target=target.describe(),
            p95_ms=result.p95_ms,
            errors=result.errors,
            passed=result.p95_ms < target.max_p95_ms and not result.errors,
        )
        for target in targets
        for name in target.scenarios
        if (result := by_name.get(name)) is not None
    ]


def _aligned(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Text columns: the first `left` (and any after the numbers) left-aligned, the numbers right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = [any(ch.isdigit() for row in rows for ch in row[i][:1]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i >= left and numeric[i] else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * max(len(line) for line in lines))
    return lines


def _verdict(passed: list[bool], text: str) -> str:
    return f"{'PASS' if all(passed) else 'FAIL'}  {text}" if passed else ""


def table(report: Report) -> str:
    """One table: per row its latencies, its ratios to the floor, and its verdicts against the brief's target and
    our goal; then what each row cost in CPU, the tallies of the verdicts, the mixed load, and the notes."""
    s = report.settings
    brief = {result.scenario: result for result in report.brief}
    goals: dict[str, list[GoalResult]] = {}
    for goal in report.goals:
        goals.setdefault(goal.scenario, []).append(goal)
    header = ["scenario", "p50 ms", "p95 ms", "p99 ms", "req/s", "req/s÷floor", "p95÷floor", "errors"]
    header += ["brief's target", "our goal"]
    rows = [
        [
            r.name,
            _number(r.p50_ms),
            _number(r.p95_ms),
            _number(r.p99_ms),
            f"{r.requests_per_s:,.0f}",
            f"{r.requests_per_s_vs_floor:.1%}",
            f"{r.p95_vs_floor:.2f}x",
            f"{r.errors:,}",
            _verdict([brief[r.name].passed], brief[r.name].target) if r.name in brief else "",
            _verdict([g.passed for g in goals.get(r.name, [])], "; ".join(g.goal for g in goals.get(r.name, []))),
        ]
        for r in report.scenarios
    ]
    scale_floor = "; each scale row at the large size's: the same row at the small size" if report.scale else ""
    lines = [
        f"{s.workers} Granian workers, {s.connections} connections; per scenario {s.rounds} interleaved rounds x "
        f"{s.duration_s:g} s, each after a {s.warmup_s:g} s warm-up; floor = {FLOOR} (each upload row's: its "
        f"chunk size's upload_floor{scale_floor}); a verdict fails on any error too",
        *_aligned(header, rows),
        "",
        *_aligned(
            ["scenario", "requests", "server CPU", "server µs/req", "client CPU"],
            [
                [
                    r.name,
                    f"{r.requests:,}",
                    f"{r.server_cpu_cores:.2f} cores",
                    f"{r.server_cpu_us_per_request:,.0f}",
                    f"{r.client_cpu_cores:.2f} cores",
                ]
                for r in report.scenarios
            ],
        ),
        "",
    ]
    if report.brief:
        lines.append(_tally("brief's targets", [(t.scenario, "", t.passed) for t in report.brief]))
    if report.goals:
        lines.append(_tally("our goals", [(g.scenario, f" (#{g.issue})", g.passed) for g in report.goals]))
    lines += [
        f"cache speed-up, {c.scenario}: {c.requests_per_s:.2f}x the req/s without the cache; p50 "
        f"{_number(c.uncached_p50_ms)} -> {_number(c.p50_ms)} ms; server CPU "
        f"{c.uncached_server_cpu_us_per_request:,.0f} -> {c.server_cpu_us_per_request:,.0f} µs/req"
        for c in report.cache_speedups
    ]
    if report.scale is not None:
        lines += scale_lines(report.scale)
    if report.mixed is not None:
        lines += mixed_lines(report.mixed)
    if report.overload is not None:
        lines += overload_lines(report.overload)
    lines += report.notes
    return "\n".join(lines)


def _number(value: float) -> str:
    """Milliseconds with as many decimals as their size needs: 3.04, 38.1, 4,811."""
    if math.isnan(value):
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 100 else f"{value:.2f}"


def _tally(what: str, verdicts: list[tuple[str, str, bool]]) -> str:
    failed = [f"{name}{detail}" for name, detail, passed in verdicts if not passed]
    text = f"{what}: {len(verdicts) - len(failed)} of {len(verdicts)} PASS"
    return text + (f"; FAIL: {', '.join(failed)}" if failed else "")


def mixed_lines(mixed: MixedReport) -> list[str]:
    """The mixed load's size, tallies, events and memory, under the table."""
    lines = [
        "",
        f"mixed load: {mixed.users} users for {mixed.duration_s:g} s (memory's 'warm' after {mixed.warmup_s:g} s), "
        f"{mixed.worker_processes} roi worker process(es): {mixed.http_requests:,} HTTP requests, "
        f"{mixed.total_errors:,} errors",
        "  per kind, count (errors): "
        + ", ".join(f"{kind} {count:,} ({mixed.errors.get(kind, 0)})" for kind, count in mixed.requests.items()),
        f"  WebSocket: {mixed.events_received:,} events received of {mixed.events_published:,} published on the users' "
        f"channels; {mixed.events_missing} missing, {mixed.events_out_of_order} out of order, "
        f"{mixed.sockets_closed} sockets closed by the server",
        "  RSS MiB, start -> warm -> end (peak):",
        *(
            f"    {m.role} {m.pid}: {m.start_mib:.1f} -> {m.warm_mib:.1f} -> {m.end_mib:.1f} ({m.peak_mib:.1f}), "
            f"{m.growth_mib:+.1f} since warm"
            for m in mixed.memory
        ),
        *(f"  error: {error}" for error in mixed.first_errors),
        _verdict([not mixed.total_errors], "mixed: zero errors (responses, runs, parses, events, sockets)"),
        _verdict(
            [mixed.flat],
            f"mixed: flat memory (every process's RSS grew <= {mixed.flat_tolerance_mib:g} MiB from warm to end)",
        ),
    ]
    return lines


def scale_lines(scale: ScaleReport) -> list[str]:
    """Each database of the scale scenario, then per row its p50 and p95 at both sizes and the ratio of the p95s."""
    lines = [
        "",
        f"scale: the uncached service on a copy of each template; reads at {scale.read_connections} connections, "
        f"writes at {scale.write_connections}",
    ]
    for size in scale.sizes:
        seed = f"seeded in {size.seed_s:,.1f} s" if size.seeded_now else f"seeded {size.seeded_at:%Y-%m-%d %H:%M} UTC"
        if size.upgraded_from:
            seed += f", migrated from {size.upgraded_from}"
        workflows, indexes, steps, step_indexes = (
            f"{size_bytes / size.workflows:,.0f}"
            for size_bytes in (
                size.workflow_table_bytes,
                size.workflow_index_bytes,
                size.step_table_bytes,
                size.step_index_bytes,
            )
        )
        lines += [
            f"  {size.label}: {size.workflows:,} workflows ({size.shape}), template {size.template} ({seed}; "
            f"copied in {size.copy_s:.1f} s); database {size.database_bytes / 2**20:,.0f} MiB",
            f"    {size.bytes_per_workflow:,.0f} bytes per workflow: roi_workflows {workflows} + its indexes "
            f"{indexes}, workflow_steps (4 a workflow) {steps} + its indexes {step_indexes}; cursor page "
            f"{size.cursor_page:,} of {size.pages:,} (the cursors before it walked in {size.cursor_walk_s:.1f} s)",
            "    answers: " + "; ".join(f"{name} {answer}" for name, answer in size.answers.items()),
        ]
    for ratio in scale.ratios:
        lines.append(
            f"  {ratio.scenario}: p50 {_number(ratio.small_p50_ms)} -> {_number(ratio.large_p50_ms)} ms, p95 "
            f"{_number(ratio.small_p95_ms)} -> {_number(ratio.large_p95_ms)} ms: {ratio.p95_ratio:.2f}x "
            f"({ratio.large} ÷ {ratio.small})"
        )
    return lines


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")


def overload_lines(o: OverloadReport) -> list[str]:
    """The overload's offered, admitted and refused requests, its failures, memory and recovery, under the table."""
    failures = o.timeouts + o.resets + o.connect_failures + o.other_statuses
    return [
        f"overload: {o.target}, capacity {o.capacity_rps:,.0f} req/s, offered {o.offered_rps:,.0f} req/s open-loop for "
        f"{o.duration_s:g} s (load average {o.load_average_before:.2f} before, {o.load_average_during:.2f} at the end; "
        f"client CPU {o.client_cpu_cores:.2f} cores)",
        f"  admitted {o.admitted:,} ({o.admitted_rps:,.0f} req/s): p50 {_number(o.admitted_p50_ms)} / p95 "
        f"{_number(o.admitted_p95_ms)} / p99 {_number(o.admitted_p99_ms)} ms",
        f"  refused {o.refused:,} with 503 ({o.refused_without_retry_after} without Retry-After): p50 "
        f"{_number(o.refused_p50_ms)} / p99 {_number(o.refused_p99_ms)} ms",
        f"  timeouts {o.timeouts}, resets {o.resets}, failed connects {o.connect_failures}, other statuses "
        f"{o.other_statuses}; arrivals the client could not send ({o.client_unsent}: all its connections busy)",
        f"  /health under overload: {o.health_probes} probes, {o.health_probe_failures} failed, p99 "
        f"{_number(o.health_probe_p99_ms)} ms",
        f"  RSS MiB by pid: workers before {o.worker_rss_before_mib}, peak (main too) {o.worker_rss_peak_mib}, "
        f"workers after {o.worker_rss_after_mib}",
        f"  recovery: p95 back within 1.5x of the normal load's ({_number(o.normal_p95_ms)} ms) after "
        f"{o.recovery_s:g} s",
        _verdict([not failures, not o.client_unsent], "overload: 0 timeouts, resets or unexpected statuses"),
        _verdict([o.admitted_p99_ms <= OVERLOAD_MAX_ADMITTED_P99_MS], "overload: admitted p99 <= 1 s"),
        _verdict([not o.refused_without_retry_after], "overload: every refusal carries Retry-After"),
        _verdict([o.recovery_s <= OVERLOAD_MAX_RECOVERY_S], "overload: p95 back to normal within 2 s"),
    ]
