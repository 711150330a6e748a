"""`roi bench` end to end: servers, a throwaway database, Granian, the seed, interleaved rounds, the report."""

from __future__ import annotations

import datetime
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click
import uvloop

from bench.loadgen import Measurement, measure
from bench.machine import describe_machine
from bench.report import (
    JobsDetail,
    MixedReport,
    OverloadReport,
    Report,
    RunSettings,
    ScaleReport,
    ScenarioResult,
    cache_speedups,
    judge,
    judge_brief,
    percentile,
    summarize,
    table,
    write_json,
)
from bench.scenarios import (
    BRIEF,
    BROWSER,
    FLOOR,
    GOALS,
    JOBS,
    MIXED,
    OVERLOAD,
    OVERLOAD_TARGET,
    SCALE,
    SCENARIOS,
    SERVICES,
    SIMULATION,
    UPLOADS,
    UPLOADS_S3,
    WS,
    Scenario,
    Seed,
    Target,
)
from bench.seed import STEPS_IN_DETAIL, WORKFLOW_COUNT, seed
from bench.service import BenchFailed, fresh_database, redis_namespace
from infra.settings import get_settings
from testkit.granian import Server, granian_server, log_tail

DURATION_S = 10.0
WARMUP_S = 1.0
QUICK_DURATION_S = 2.0
QUICK_WARMUP_S = 0.5
KEPT_LOG_LINES = 1000


def run_bench(
    *,
    workers: int,
    connections: int,
    duration_s: float | None,
    quick: bool,
    rounds: int,
    scenario_names: tuple[str, ...],
    run_all: bool,
    output: str | None,
) -> None:
    """Measure, print the table, write the JSON report and the plot; a failure raises `BenchFailed` (exit code 1).

    With neither `--scenario` nor `--all`, every scenario runs, as with `--all`: every one but `scale`, which needs
    minutes and GBs and runs only when named.
    """
    scenarios = select_scenarios(scenario_names, run_all)
    others = selected_others(scenario_names)
    settings = RunSettings(
        workers=workers,
        connections=connections,
        duration_s=duration_s or (QUICK_DURATION_S if quick else DURATION_S),
        warmup_s=QUICK_WARMUP_S if quick else WARMUP_S,
        rounds=rounds,
        seeded_workflows=WORKFLOW_COUNT,
        steps_in_detail=STEPS_IN_DETAIL,
    )
    load_average_before = list(os.getloadavg())
    started_at = datetime.datetime.now(datetime.UTC)
    report_path = Path(output or f"bench-results/bench-{started_at:%Y%m%dT%H%M%SZ}.json")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    jobs: JobsDetail | None = None
    mixed: MixedReport | None = None
    scale: ScaleReport | None = None
    overload: OverloadReport | None = None
    with ExitStack() as stack:
        database_server_url, redis_url = stack.enter_context(_service_urls())
        database_url = stack.enter_context(fresh_database(database_server_url))
        namespace = stack.enter_context(redis_namespace(redis_url))
        _migrate(database_url)
        environment = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
        # The overload's target is a row of its own service, which may not be among the scenarios.
        extra_services = [SCENARIOS[OVERLOAD_TARGET].service] if OVERLOAD in others else []
        servers = _start_servers(stack, scenarios, extra_services, environment, workers, report_path)
        deployed = servers["deployed"]
        results, seeded = uvloop.run(_bench(servers, database_url, redis_url, scenarios, settings))
        floor = next(result for result in results if result.name == FLOOR)
        if JOBS in others:
            from bench.jobs import measure_jobs

            job_results, job_notes, jobs = uvloop.run(
                measure_jobs(deployed, database_url, redis_url, environment, settings, quick, floor)
            )
            results += job_results
            notes += job_notes
        if SIMULATION in others:
            from bench.simulation import measure_simulation

            results += uvloop.run(measure_simulation(deployed.base_url, environment, settings, quick, floor))
        if WS in others:
            from bench.ws import measure_ws

            results += uvloop.run(measure_ws(deployed, redis_url, namespace, settings, quick, floor))
        if UPLOADS in others:
            from bench.uploads import measure_uploads

            upload_results, upload_notes = uvloop.run(measure_uploads(deployed, environment, settings, quick, floor))
            notes += upload_notes
            results += upload_results
        if UPLOADS_S3 in others:
            from bench.uploads_s3 import measure_s3_uploads

            s3_results, s3_notes = uvloop.run(measure_s3_uploads(environment, settings, quick, floor))
            results += s3_results
            notes += s3_notes
        if BROWSER in others:
            from bench.browser import measure_browser

            browser_results, browser_notes = uvloop.run(
                measure_browser(deployed, environment, settings.rounds, quick, floor)
            )
            results += browser_results
            notes += browser_notes
        if MIXED in others:
            from bench.mixed import measure_mixed

            mixed_results, mixed = uvloop.run(measure_mixed(deployed, environment, settings, floor))
            results += mixed_results
        if OVERLOAD in others:
            from bench.overload import measure_overload

            target = servers[SCENARIOS[OVERLOAD_TARGET].service]
            overload_results, overload = uvloop.run(measure_overload(target, seeded, settings, quick, floor))
            results += overload_results
        if SCALE in scenario_names:
            from bench.scale import measure_scale

            scale_results, scale = measure_scale(database_server_url, redis_url, settings, floor, report_path)
            results += scale_results
        machine = uvloop.run(describe_machine(database_url, redis_url, load_average_before))
    report = Report(
        started_at=started_at,
        machine=machine,
        settings=settings,
        scenarios=results,
        goals=judge(GOALS, results),
        notes=notes,
        brief=judge_brief(BRIEF, results),
        mixed=mixed,
        cache_speedups=cache_speedups(results),
        scale=scale,
        overload=overload,
        jobs=jobs,
    )
    write_json(report, report_path)
    click.echo(table(report))
    _plot(report, report_path.with_suffix(".png"))
    click.echo(f"wrote {report_path} (and the end of each server's log beside it)")


def _plot(report: Report, path: Path) -> None:
    """The latency plot beside the JSON; without matplotlib, one line that says how to get it."""
    from bench.plot import PLOT_HINT, write_plot

    if write_plot(report, path):
        click.echo(f"wrote {path}")
    else:
        click.echo(f"no plot: {PLOT_HINT}")


def _start_servers(
    stack: ExitStack,
    scenarios: list[Scenario],
    extra_services: list[str],
    environment: dict[str, str],
    workers: int,
    report_path: Path,
) -> dict[str, Server]:
    """One Granian per service the scenarios name, stopped by `stack`; the end of its log is kept beside the report."""
    work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roi-bench-run-")))
    servers: dict[str, Server] = {}
    for service in dict.fromkeys([*(scenario.service for scenario in scenarios), *extra_services]):
        log_path = work_dir / f"{service}.log"
        stack.callback(_keep_log_tail, log_path, report_path.with_suffix(f".{service}.log"))
        # As `roi serve` does: the Prometheus samples of all worker processes in a fresh folder.
        metrics_dir = work_dir / f"{service}-metrics"
        metrics_dir.mkdir()
        # And its backlog and backpressure (Granian's CLI reads GRANIAN_*): overload meets the same server.
        service_environment = {
            **environment,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "GRANIAN_BACKLOG": str(get_settings().api_backlog),
            "GRANIAN_BACKPRESSURE": str(get_settings().api_backpressure),
        }
        servers[service] = stack.enter_context(
            granian_server(SERVICES[service], service_environment, workers, log_path)
        )
        click.echo(f"roi bench: {service} service on {servers[service].base_url}", err=True)
    return servers


OTHERS = (JOBS, SIMULATION, WS, UPLOADS, UPLOADS_S3, BROWSER, MIXED, OVERLOAD)
"""What is measured otherwise than by repeating one HTTP request, after the HTTP scenarios, in this order; then
SCALE, only when named."""


def select_scenarios(names: tuple[str, ...], run_all: bool) -> list[Scenario]:
    """The floor first, then the chosen HTTP scenarios (all of them by default) in the registry's order."""
    if names and run_all:
        raise click.UsageError("give --scenario or --all, not both")
    unknown = sorted(set(names) - SCENARIOS.keys() - {*OTHERS, SCALE})
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(unknown)}; known: {', '.join([*SCENARIOS, *OTHERS])} and {SCALE} (only when named)",
            param_hint="--scenario",
        )
    chosen = set(names) if names else set(SCENARIOS)
    return [SCENARIOS[FLOOR], *(s for s in SCENARIOS.values() if s.name in chosen and s.name != FLOOR)]


def selected_others(names: tuple[str, ...]) -> list[str]:
    """The non-HTTP scenarios to run: those named, or all of them when none is."""
    return [name for name in OTHERS if not names or name in names]


@contextmanager
def _service_urls() -> Iterator[tuple[str, str]]:
    """The configured PostgreSQL and Redis, or embedded ones; either way under a temporary ROI_DATA_DIR.

    ROI_DATA_DIR and a fresh SECRET_KEY are set for this process and the servers alike, so nothing is written
    outside that folder, which is deleted afterwards.
    """
    from app.cli import service_urls

    data_dir = Path(tempfile.mkdtemp(prefix="roi-bench-"))
    data_dir.chmod(0o755)  # as root, embedded PostgreSQL runs as `nobody`, which must traverse it
    os.environ.update(ROI_DATA_DIR=str(data_dir), SECRET_KEY=secrets.token_urlsafe(32))
    get_settings.cache_clear()
    try:
        with service_urls(get_settings()) as settings:
            assert settings.database_url
            assert settings.redis_url
            yield settings.database_url, settings.redis_url
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _keep_log_tail(log_path: Path, kept_path: Path) -> None:
    """A server's log has a line per request: only its end is kept, beside the report, for errors to be read."""
    if log_path.exists():
        kept_path.write_text(log_tail(log_path, KEPT_LOG_LINES) + "\n")


def _migrate(database_url: str) -> None:
    from db.migrate import upgrade

    upgrade(database_url)


async def _bench(
    servers: dict[str, Server],
    database_url: str,
    redis_url: str,
    scenarios: list[Scenario],
    settings: RunSettings,
) -> tuple[list[ScenarioResult], Seed]:
    """Seed through the first service (they share the database), then measure in interleaved rounds."""
    seeded = await seed(next(iter(servers.values())).base_url, database_url)
    rounds: dict[str, list[Measurement]] = {scenario.name: [] for scenario in scenarios}
    for round_number in range(1, settings.rounds + 1):
        for scenario in scenarios:
            server = servers[scenario.service]
            if scenario.setup is not None:
                await scenario.setup(Target(server.base_url, database_url, redis_url, seeded))
            measurement = await _measure(scenario, server, scenario.request(server.address, seeded), settings)
            rounds[scenario.name].append(measurement)
            latencies_ms = sorted(latency * 1000 for latency in measurement.latencies_s)
            click.echo(
                f"round {round_number}/{settings.rounds} {scenario.name}: "
                f"{measurement.requests / measurement.elapsed_s:,.0f} req/s, "
                f"p95 {percentile(latencies_ms, 0.95):.1f} ms, {measurement.errors} errors",
                err=True,
            )
    return summarize(scenarios, rounds), seeded


async def _measure(scenario: Scenario, server: Server, request: bytes, settings: RunSettings) -> Measurement:
    try:
        measurement = await measure(
            server.host,
            server.port,
            request,
            expected_status=scenario.expected_status,
            connections=settings.connections,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
            server_cpu_s=server.cpu_s,
        )
    except OSError as error:
        raise BenchFailed(f"{scenario.name}: the load generator cannot reach {server.base_url}: {error}") from error
    if not measurement.requests:
        raise BenchFailed(f"{scenario.name}: no response in {settings.duration_s:g} s; see the server's log")
    return measurement
