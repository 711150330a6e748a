"""The scale scenario of `roi bench`: the same requests at 11,000 and at 1,000,000 workflows, p95 against p95.

Run only when named (`--scenario scale`): the databases come from template databases seeded once per size and schema
revision (bench/scale_seed.py; GBs and minutes for the large one), copied for the run and dropped after it. Each copy
gets a Granian of its own serving the uncached service (bench/uncached.py), so every read reaches PostgreSQL; both
serve in the same rounds, each row measured at one size and then at the other (the large one first every other
round).

Rows, each suffixed with its size (`_11k`, `_1m`), of the measured user: 100,000 of 1,000,000 workflows, 10,100 of
11,000 (the fewest that answer every read below alike: bench/scale_seed.py's Shape). Every list read must answer 50
items and a next page at both sizes, or the run stops before measuring:
- reads under the load generator at the run's connections: `scale_first_page` (`?limit=50`), `scale_cursor_page`
  (the page 2,000 pages deep but never the last, which answers no next page: page 1,999 of 2,000 at 1M, 201 of 202
  at 11k, through the cursor walked to it once before the rounds), `scale_offset_10000` (`?offset=10000&limit=50`),
  `scale_status_page` (`?status=failed&limit=50`), `scale_detail` and `scale_status` of the user's newest workflow;
- writes at WRITE_CONNECTIONS connections: `scale_create` (`POST /api/workflows` under the load generator; the
  workflows it made are deleted after each measurement, so the sizes stay as seeded) and `scale_run`/`scale_cancel`:
  each connection runs and at once cancels cancelled workflows of its own (no worker: a queued run cancels at
  once, and each workflow ends cancelled as it began). The pairs' server CPU is split between the two rows.

The large size is 1,000,000, or ROWS_VARIABLE's value (a multiple of 1,000) for a shorter try; the goals judge the
`_1m` rows only.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import click
import httpx
import msgspec
import uvloop

from bench.connection import Connection, UploadFailed
from bench.loadgen import Measurement, measure
from bench.report import (
    Round,
    RunSettings,
    ScaleReport,
    ScaleSize,
    ScenarioResult,
    percentile,
    pooled_result,
    scale_ratios,
)
from bench.scale_seed import BIG_USER_EMAIL, PAGE, PASSWORD, ScaleDatabase, scale_database
from bench.scenarios import (
    BEARER,
    SCALE_READS,
    SCALE_SIZES,
    SCALE_WRITES,
    SERVICES,
    Scenario,
    Seed,
    scale_row,
    size_label,
)
from bench.service import BenchFailed, expect, redis_namespace
from bench.workers import forget_queue
from db.pools import asyncpg_dsn
from infra.queue import create_queue
from testkit.granian import Server, granian_server, log_tail

ROWS_VARIABLE = "ROI_BENCH_SCALE_ROWS"
SERVICE = "uncached"
DEEP_PAGE = 2_000
WRITE_CONNECTIONS = 4
RUN_CANCEL_WORKFLOWS = 3
"""Per write connection: the cancelled workflows it runs and cancels in turn."""
CREATED_NAME = "roi bench scale create"
KEPT_LOG_LINES = 1000
CREATE_BODY = msgspec.json.encode(
    {"name": CREATED_NAME, "cash_flows": [-1000.0, 300.0, 400.0, 500.0], "parameters": {"discount_rate": 0.08}}
)


class _Item(msgspec.Struct):
    id: str


class _Page(msgspec.Struct):
    items: list[_Item]
    next_cursor: str | None


class _Items(msgspec.Struct):
    items: list[msgspec.Raw]
    next_cursor: str | None = None


class _Token(msgspec.Struct):
    access_token: str


@dataclass
class Size:
    """One database under test, its server, and what the rounds ask of it (filled by `_prepare`)."""

    database: ScaleDatabase
    server: Server
    namespace: str
    label: str = ""
    seed: Seed = field(default_factory=lambda: Seed(token="", workflow_id=""))
    cursor: str = ""
    cursor_page: int = 1
    pages: int = 1
    cursor_walk_s: float = 0.0
    cancelled: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    """Per read, what it answers at this size (`50 items and a next page, 64.1 kB`)."""
    items: dict[str, tuple[int, bool]] = field(default_factory=dict)
    """Per list read, its items and whether a next page follows: the same at both sizes, or the times do not
    compare."""

    def row(self, name: str) -> str:
        """The name of scenario `name`'s row at this size: `scale_detail_1m`."""
        return scale_row(name, self.database.shape.workflows)


def large_size() -> int:
    """The large database's workflows: 1,000,000 unless ROWS_VARIABLE asks for fewer (or more) for a shorter try."""
    value = os.environ.get(ROWS_VARIABLE, "")
    try:
        return int(value.replace("_", "")) if value else SCALE_SIZES[1]
    except ValueError:
        raise click.BadParameter(f"{ROWS_VARIABLE}={value!r} is not a number of workflows") from None


def measure_scale(
    server_url: str, redis_url: str, settings: RunSettings, floor: ScenarioResult, report_path: Path
) -> tuple[list[ScenarioResult], ScaleReport]:
    """Both databases and their servers for the length of the rounds; rows in pairs, small size first."""
    sizes = (SCALE_SIZES[0], large_size())
    with ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roi-bench-scale-")))
        under_test = []
        for workflows in sizes:
            database = stack.enter_context(scale_database(server_url, workflows))
            label = size_label(workflows)
            click.echo(
                f"scale: {label} from {database.template}, copied in {database.copy_s:.1f} s, "
                f"{database.database_bytes / 2**20:,.0f} MiB, {database.bytes_per_workflow:,.0f} bytes per workflow",
                err=True,
            )
            namespace = stack.enter_context(redis_namespace(redis_url))
            metrics_dir = work_dir / f"{label}-metrics"
            metrics_dir.mkdir()
            environment = {
                "DATABASE_URL": database.url,
                "REDIS_URL": redis_url,
                "REDIS_NAMESPACE": namespace,
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            }
            log_path = work_dir / f"{label}.log"
            stack.callback(_keep_log_tail, log_path, report_path.with_suffix(f".scale_{label}.log"))
            server = stack.enter_context(granian_server(SERVICES[SERVICE], environment, settings.workers, log_path))
            click.echo(f"roi bench: {SERVICE} service on {server.base_url} at {workflows:,} workflows", err=True)
            under_test.append(Size(database, server, namespace, label))
        results = uvloop.run(_measure(under_test, redis_url, settings, floor))
    small, large = (size.label for size in under_test)
    report = ScaleReport(
        sizes=[_described(size) for size in under_test],
        read_connections=settings.connections,
        write_connections=WRITE_CONNECTIONS,
        ratios=scale_ratios(results, (*SCALE_READS, *SCALE_WRITES), small, large),
    )
    return results, report


def _described(size: Size) -> ScaleSize:
    database = size.database
    return ScaleSize(
        label=size.label,
        workflows=database.shape.workflows,
        shape=database.shape.describe(),
        template=database.template,
        seeded_now=database.seeded_now,
        seed_s=database.seed_s,
        seeded_at=database.seeded_at,
        upgraded_from=database.upgraded_from,
        copy_s=database.copy_s,
        database_bytes=database.database_bytes,
        bytes_per_workflow=database.bytes_per_workflow,
        workflow_table_bytes=database.workflow_table_bytes,
        workflow_index_bytes=database.workflow_index_bytes,
        step_table_bytes=database.step_table_bytes,
        step_index_bytes=database.step_index_bytes,
        cursor_page=size.cursor_page,
        pages=size.pages,
        cursor_walk_s=size.cursor_walk_s,
        answers=size.answers,
    )


def _keep_log_tail(log_path: Path, kept_path: Path) -> None:
    if log_path.exists():
        kept_path.write_text(log_tail(log_path, KEPT_LOG_LINES) + "\n")


async def _measure(
    sizes: list[Size], redis_url: str, settings: RunSettings, floor: ScenarioResult
) -> list[ScenarioResult]:
    rounds: dict[str, list[Round]] = {}
    try:
        for size in sizes:
            await _prepare(size)
        _check_alike(sizes)
        for round_number in range(1, settings.rounds + 1):
            # Every other round the large size goes first: whatever else the shared cores do drifts into neither.
            ordered = sizes if round_number % 2 else sizes[::-1]
            for name in SCALE_READS:
                for size in ordered:
                    scenario = _read(name, size)
                    _record(rounds, scenario.name, round_number, settings, await _load(scenario, size, settings))
            for size in ordered:
                scenario = _create(size)
                measured = await _load(scenario, size, settings, WRITE_CONNECTIONS)
                _record(rounds, scenario.name, round_number, settings, measured)
                await _delete_created(size)
            for size in ordered:
                run, cancel = await _run_and_cancel(size, settings)
                _record(rounds, size.row("scale_run"), round_number, settings, run)
                _record(rounds, size.row("scale_cancel"), round_number, settings, cancel)
    finally:
        for size in sizes:
            await forget_queue(create_queue(redis_url, size.namespace))
    return _results(sizes, rounds, settings, floor)


def _record(rounds: dict[str, list[Round]], name: str, round_number: int, settings: RunSettings, one: Round) -> None:
    rounds.setdefault(name, []).append(one)
    click.echo(
        f"round {round_number}/{settings.rounds} {name}: {one.rated / one.elapsed_s:,.0f} req/s, "
        f"p95 {percentile(sorted(one.latencies_ms), 0.95):.1f} ms, {one.errors} errors",
        err=True,
    )


def _results(
    sizes: list[Size], rounds: dict[str, list[Round]], settings: RunSettings, floor: ScenarioResult
) -> list[ScenarioResult]:
    """Rows in pairs; the small size's against the run's floor, the large size's against its small twin."""
    small, large = sizes
    results = []
    for name in (*SCALE_READS, *SCALE_WRITES):
        connections = settings.connections if name in SCALE_READS else WRITE_CONNECTIONS
        twin = floor
        for size in (small, large):
            row = size.row(name)
            request = f"{_requests(name, size)}; {connections} connections, {size.database.shape.workflows:,} workflows"
            result = pooled_result(row, SERVICE, request, rounds[row], twin)
            results.append(result)
            twin = result
    return results


def _requests(name: str, size: Size) -> str:
    if name in SCALE_READS:
        scenario = _read(name, size)
        path = scenario.path.replace(size.cursor, "<cursor>") if size.cursor else scenario.path
        where = f"page {size.cursor_page:,} of {size.pages:,}, " if name == "scale_cursor_page" else ""
        return f"{scenario.method} {path} ({where}{size.answers[name]})"
    if name == "scale_create":
        return "POST /api/workflows"
    return f"POST /api/workflows/{{id}}/{name.removeprefix('scale_')}, each run followed by a cancel"


def _read(name: str, size: Size) -> Scenario:
    paths = {
        "scale_first_page": f"/api/workflows?limit={PAGE}",
        "scale_cursor_page": f"/api/workflows?limit={PAGE}&cursor={size.cursor}",
        "scale_offset_10000": f"/api/workflows?offset=10000&limit={PAGE}",
        "scale_status_page": f"/api/workflows?status=failed&limit={PAGE}",
        "scale_detail": "/api/workflows/{workflow_id}",
        "scale_status": "/api/workflows/{workflow_id}/status",
    }
    return Scenario(size.row(name), "GET", paths[name], BEARER, service=SERVICE)


def _create(size: Size) -> Scenario:
    headers = {**BEARER, "Content-Type": "application/json"}
    row = size.row("scale_create")
    return Scenario(row, "POST", "/api/workflows", headers, CREATE_BODY, expected_status=201, service=SERVICE)


async def _load(scenario: Scenario, size: Size, settings: RunSettings, connections: int | None = None) -> Round:
    server = size.server
    try:
        measured = await measure(
            server.host,
            server.port,
            scenario.request(server.address, size.seed),
            expected_status=scenario.expected_status,
            connections=connections or settings.connections,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
            server_cpu_s=server.cpu_s,
        )
    except OSError as error:
        raise BenchFailed(f"{scenario.name}: the load generator cannot reach {server.base_url}: {error}") from error
    if not measured.requests:
        raise BenchFailed(f"{scenario.name}: no response in {settings.duration_s:g} s; see the server's log")
    return _round(measured)


def _round(measured: Measurement) -> Round:
    return Round(
        latencies_ms=[latency * 1000 for latency in measured.latencies_s],
        rated=measured.requests,
        served=measured.requests,
        errors=measured.errors,
        elapsed_s=measured.elapsed_s,
        client_cpu_s=measured.client_cpu_s,
        server_cpu_s=measured.server_cpu_s,
    )


async def _prepare(size: Size) -> None:
    """Log in as the big user; its newest workflow, its cancelled ones, and the cursor to the deep page."""
    shape = size.database.shape
    async with httpx.AsyncClient(base_url=size.server.base_url, timeout=60.0) as api:
        login = await api.post("/api/auth/login", json={"email": BIG_USER_EMAIL, "password": PASSWORD})
        token = msgspec.json.decode(expect(login, 200, "scale"), type=_Token).access_token
        api.headers["Authorization"] = f"Bearer {token}"
        newest = await _page(api, "limit=1")
        cancelled = await _page(api, f"status=cancelled&limit={WRITE_CONNECTIONS * RUN_CANCEL_WORKFLOWS}")
        if len(cancelled.items) < WRITE_CONNECTIONS * RUN_CANCEL_WORKFLOWS:
            raise BenchFailed(f"scale: the big user of {size.database.template} has too few cancelled workflows")
        size.seed = Seed(token=token, workflow_id=newest.items[0].id)
        size.cancelled = [item.id for item in cancelled.items]
        size.pages = math.ceil(shape.big_user / PAGE)
        # Never the last page: it would read one row fewer and answer no next_cursor.
        size.cursor_page = min(DEEP_PAGE, size.pages - 1)
        started = time.perf_counter()
        cursor: str | None = None
        for _ in range(size.cursor_page - 1):
            page = await _page(api, f"limit={PAGE}" + (f"&cursor={cursor}" if cursor else ""))
            cursor = page.next_cursor
        size.cursor_walk_s = time.perf_counter() - started
        if cursor is None:
            raise BenchFailed(f"scale: the big user of {size.database.template} has a list of one page")
        size.cursor = cursor
        for name in SCALE_READS:
            await _answer(size, name, api)
    click.echo(
        f"scale: {size.label}: cursor to page {size.cursor_page:,} of {size.pages:,} walked in "
        f"{size.cursor_walk_s:.1f} s",
        err=True,
    )


async def _answer(size: Size, name: str, api: httpx.AsyncClient) -> None:
    """What read `name` answers at this size, in words for the report and as counts for `_check_alike`."""
    path = _read(name, size).path.format_map(msgspec.structs.asdict(size.seed))
    body = expect(await api.get(path), 200, "scale")
    words = f"{len(body) / 1000:,.1f} kB"
    if path.startswith("/api/workflows?"):
        page = msgspec.json.decode(body, type=_Items)
        size.items[name] = (len(page.items), page.next_cursor is not None)
        following = "and a next page" if page.next_cursor is not None else "and no next page"
        words = f"{len(page.items)} items {following}, {words}"
    size.answers[name] = words


def _check_alike(sizes: list[Size]) -> None:
    check_alike({size.label: size.items for size in sizes}, {size.label: size.answers for size in sizes})


def check_alike(items: dict[str, dict[str, tuple[int, bool]]], answers: dict[str, dict[str, str]]) -> None:
    """Every list read answers a full page with a page after it at every size (`items`: per size, per read, its
    items and whether a next page follows); otherwise a ratio would compare a short answer with a long one (a small
    list's status page or deep offset holds fewer items, or none). `answers` words them for the error."""
    for name in SCALE_READS:
        answered = {by_read.get(name) for by_read in items.values()}
        if len(answered) != 1 or not answered <= {None, (PAGE, True)}:
            said = "; ".join(f"{label}: {answers[label].get(name, 'nothing')}" for label in items)
            raise BenchFailed(f"scale: {name} does not answer {PAGE} items and a next page at every size ({said})")


async def _page(api: httpx.AsyncClient, query: str) -> _Page:
    return msgspec.json.decode(expect(await api.get(f"/api/workflows?{query}"), 200, "scale"), type=_Page)


async def _delete_created(size: Size) -> None:
    """The workflows `scale_create` made, so that every round reads the database as seeded."""
    connection = await asyncpg.connect(asyncpg_dsn(size.database.url))
    try:
        await connection.execute(
            "DELETE FROM roi_workflows WHERE owner_id = (SELECT id FROM users WHERE email = $1) AND name = $2",
            BIG_USER_EMAIL,
            CREATED_NAME,
        )
    finally:
        await connection.close()


@dataclass
class _RunCancel:
    """The run/cancel pairs of the write connections: each request's latency by kind, while recording."""

    recording: bool = False
    stopping: bool = False
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"run": [], "cancel": []})
    errors: dict[str, int] = field(default_factory=lambda: {"run": 0, "cancel": 0})

    async def cycle(self, server: Server, token: str, workflow_ids: list[str]) -> None:
        connection = Connection(server)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            while not self.stopping:
                for workflow_id in workflow_ids:
                    for kind in ("run", "cancel"):
                        started = time.perf_counter()
                        path = f"/api/workflows/{workflow_id}/{kind}"
                        try:
                            status = (await connection.request("POST", path, headers)).status
                        except UploadFailed:
                            status = 0
                        if self.recording:
                            self.latencies_ms[kind].append((time.perf_counter() - started) * 1000)
                            self.errors[kind] += status != 202
        finally:
            connection.close()


async def _run_and_cancel(size: Size, settings: RunSettings) -> tuple[Round, Round]:
    """WRITE_CONNECTIONS connections, each running and cancelling its own workflows in turn; a warm-up, then the
    window. The server's CPU in the window is split between the rows by their requests: the same per request."""
    pairs = _RunCancel()
    server = size.server
    tasks = [
        asyncio.create_task(pairs.cycle(server, size.seed.token, size.cancelled[connection::WRITE_CONNECTIONS]))
        for connection in range(WRITE_CONNECTIONS)
    ]
    await asyncio.sleep(settings.warmup_s)
    pairs.recording = True
    started, client_started, server_started = time.perf_counter(), time.process_time(), server.cpu_s()
    await asyncio.sleep(settings.duration_s)
    pairs.recording = False
    elapsed_s, client_cpu_s = time.perf_counter() - started, time.process_time() - client_started
    server_cpu_s = server.cpu_s() - server_started
    pairs.stopping = True
    await asyncio.gather(*tasks)
    served = max(1, sum(len(latencies) for latencies in pairs.latencies_ms.values()))
    run, cancel = (
        Round(
            latencies_ms=pairs.latencies_ms[kind],
            rated=len(pairs.latencies_ms[kind]),
            served=len(pairs.latencies_ms[kind]),
            errors=pairs.errors[kind],
            elapsed_s=elapsed_s,
            client_cpu_s=client_cpu_s * len(pairs.latencies_ms[kind]) / served,
            server_cpu_s=server_cpu_s * len(pairs.latencies_ms[kind]) / served,
        )
        for kind in ("run", "cancel")
    )
    return run, cancel
