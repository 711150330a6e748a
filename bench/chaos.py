"""`roi bench --scenario chaos`: the mixed load while faults are injected, then checks that nothing was lost.

The run owns its servers (bench/chaos_cluster.py): an embedded PostgreSQL and Valkey, and `roi serve` (Granian with
API_WORKERS workers, one supervised `roi worker`). USERS users of the mixed load (bench/chaos_clients.py) act for
the duration while the injector (bench/chaos_faults.py) breaks something every 5-20 s. Then the load stops, the
system settles (waited on: no run queued or running, no upload processing, every socket caught up; SETTLE_S at
most), and every check prints its verdict. Any failed check makes the command exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import random
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import click
import httpx
import msgspec
import uvloop
from redis.asyncio import Redis

from bench.chaos_clients import Answers, ChannelWatch, ChaosUser, Uploads, watch_channel
from bench.chaos_cluster import Cluster
from bench.chaos_faults import (
    CONNECTIONS_CUT,
    DEPENDENCY_DOWN,
    FAULTS,
    KILL_GRANIAN_WORKER,
    REVOKE_TOKEN,
    FaultLog,
    Injector,
    logout_exists,
    probe_revoked,
)
from bench.memory import status_mib
from bench.service import BenchFailed
from bench.uploads import Ledger
from db.pools import asyncpg_dsn
from domain.agents.steps import STEP_EXECUTORS, RunState
from domain.events.bus import EventKeys, user_channel
from domain.events.socket import CloseCode
from testkit.factories import ParametersFactory, RegistrationFactory, WorkflowCreateFactory
from testkit.granian import Server
from testkit.ledgers import csv_ledger_bytes

CHAOS = "chaos"
USERS = 12
WORKFLOWS_PER_USER = 8
SIMULATIONS = (0, 20_000, 100_000, 400_000)
"""Per workflow, chosen at random; each with a seed, so that its result can be recomputed bit for bit."""
LEDGER_ROWS = 2_000
SETTLE_S = 120.0
CATCH_UP_S = 20.0
GRACE_S = 5.0
"""After a fault's window, how long a 503 or a lost request is still put down to it (pools notice a restart on
their next use, a client's keep-alive connection on its next request)."""
RSS_SAMPLE_S = 5.0
LEFT_BEHIND_S = 10.0
DEFAULT_DURATION_S = 60.0


@dataclass
class Check:
    name: str
    passed: bool
    found: str


@dataclass
class ProcessRss:
    role: str
    first_s: float
    first_mib: float
    last_s: float = 0.0
    last_mib: float = 0.0
    peak_mib: float = 0.0


@dataclass
class Rss:
    processes: dict[int, ProcessRss] = field(default_factory=dict)

    def sample(self, roles: dict[int, str], at_s: float) -> None:
        for pid, role in roles.items():
            mib = status_mib(pid, "VmRSS")
            if mib != mib:  # NaN: gone
                continue
            process = self.processes.setdefault(pid, ProcessRss(role, at_s, mib))
            process.last_s, process.last_mib = at_s, mib
            process.peak_mib = max(process.peak_mib, mib)


def run_chaos(duration_s: float | None, seed: int | None, faults: tuple[str, ...], output: str | None) -> None:
    """The whole run; prints every fault and every check, writes the JSON report, raises `BenchFailed` on a failure."""
    seed = seed if seed is not None else secrets.randbelow(1 << 31)
    duration_s = duration_s or DEFAULT_DURATION_S
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; known: {', '.join(FAULTS)}", param_hint="--fault")
    started_at = datetime.datetime.now(datetime.UTC)
    report_path = Path(output or f"bench-results/chaos-{started_at:%Y%m%dT%H%M%SZ}.json")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="roi-chaos-"))
    data_dir.chmod(0o755)  # as root, embedded PostgreSQL runs as `nobody`, which must traverse it
    cluster = Cluster(data_dir, data_dir, _free_port(), secrets.token_urlsafe(32))
    click.echo(f"{CHAOS}: seed {seed}, {duration_s:g} s, servers under {data_dir}", err=True)
    try:
        cluster.start()
        report = uvloop.run(_chaos(cluster, duration_s, seed, list(faults) or list(FAULTS)))
    finally:
        cluster.close()
        log = data_dir / "serve.log"
        if log.exists():
            shutil.copy(log, report_path.with_suffix(".serve.log"))
        shutil.rmtree(data_dir, ignore_errors=True)
    report["started_at"] = started_at.isoformat()
    report["load_average_end"] = list(os.getloadavg())
    report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    click.echo(f"wrote {report_path}")
    failed = [check["name"] for check in report["checks"] if not check["passed"]]
    if failed:
        raise BenchFailed(f"{CHAOS}: {len(failed)} check(s) failed: {', '.join(failed)}")


async def _chaos(cluster: Cluster, duration_s: float, seed: int, kinds: list[str]) -> dict[str, Any]:
    rng = random.Random(seed)
    notes: list[str] = []
    if REVOKE_TOKEN in kinds and not await logout_exists(cluster.base_url):
        kinds.remove(REVOKE_TOKEN)
        notes.append("revoke_token disabled: the OpenAPI document has no POST /api/auth/logout")
    if not kinds:
        raise BenchFailed(f"{CHAOS}: no fault left to inject")
    for note in notes:
        click.echo(f"{CHAOS}: {note}", err=True)
    data, _ = csv_ledger_bytes(LEDGER_ROWS)
    ledger = Ledger(data, LEDGER_ROWS)
    answers, uploads = Answers(), Uploads()
    assert cluster.serve is not None
    server = Server(host="127.0.0.1", port=cluster.api_port, pid=cluster.serve.pid)
    users = await _users(cluster.base_url, server, answers, uploads, rng)
    watches = [user.watch for user in users]
    stopping = asyncio.Event()
    watching = [asyncio.create_task(watch_channel(u, server, w, stopping)) for u, w in zip(users, watches, strict=True)]
    await _until(lambda: all(watch.last_seq is not None for watch in watches), 30.0, "every socket subscribed")
    connections_start = await _connections(cluster)
    rss = Rss()
    injector = Injector(cluster, users, answers, ledger, kinds, seed)
    answers.started = time.monotonic()
    rss.sample({**cluster.api_processes(), **cluster.dependency_processes()}, 0.0)
    click.echo(f"{CHAOS}: {len(users)} users, faults {', '.join(kinds)}", err=True)
    load_stopping = asyncio.Event()
    acting = [asyncio.create_task(user.act(ledger)) for user in users]
    sampling = asyncio.create_task(_sample_rss(cluster, rss, answers, load_stopping))
    repairing = asyncio.create_task(injector.watch_serve(load_stopping))
    await injector.run(duration_s)
    for user in users:
        user.mix.stopping = True
    await asyncio.gather(*acting)
    load_s = answers.now()
    click.echo(f"{CHAOS}: load stopped after {load_s:.1f} s; settling", err=True)
    settle_started = time.monotonic()
    settled = await _settle(cluster, users, watches)
    settle_s = time.monotonic() - settle_started
    load_stopping.set()
    await asyncio.gather(sampling, repairing)
    rss.sample({**cluster.api_processes(), **cluster.dependency_processes()}, answers.now())
    checks = await _checks(cluster, users, watches, answers, uploads, injector.log)
    connections_settled = await _connections(cluster)
    stopping.set()
    await asyncio.gather(*watching)
    for user in users:
        user.connection.close()
    exit_code = await asyncio.to_thread(cluster.stop_api)
    left, leaked = await _left_behind(cluster)
    checks.append(
        Check(
            "no process or connection left behind",
            not leaked and not left["postgres"] and not left["redis"] and exit_code == 0,
            f"roi serve stopped with code {exit_code}; {len(leaked)} of its {len(cluster.seen_pids)} processes still "
            f"alive {leaked[:10]}; after it stopped {left['postgres']} PostgreSQL and {left['redis']} Redis "
            f"connections remained; settled with {connections_settled} (at the start: {connections_start})",
        )
    )
    if not settled:
        checks.append(Check("the system settled", False, f"not settled within {SETTLE_S:g} s"))
    report = _report(injector.log, answers, uploads, watches, rss, checks, notes, seed, load_s, settle_s, users)
    _print(report)
    return report


async def _users(
    base_url: str, server: Server, answers: Answers, uploads: Uploads, rng: random.Random
) -> list[ChaosUser]:
    """USERS users signed up, each with WORKFLOWS_PER_USER seeded workflows, some with Monte Carlo simulations."""
    users = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as api:
        for number in range(USERS):
            registration = RegistrationFactory.build()
            body = {"email": registration.email, "password": registration.password, "name": registration.name}
            created = await api.post("/api/auth/register", json=body)
            login = await api.post("/api/auth/login", json={k: body[k] for k in ("email", "password")})
            if created.status_code != 201 or login.status_code != 200:
                raise BenchFailed(f"{CHAOS}: cannot sign up: {created.status_code} {login.status_code} {login.text}")
            token, user_id = login.json()["access_token"], created.json()["id"]
            workflows = []
            for _ in range(WORKFLOWS_PER_USER):
                parameters = ParametersFactory.build(simulations=rng.choice(SIMULATIONS), seed=rng.randrange(1 << 62))
                workflow = WorkflowCreateFactory.build(parameters=parameters)
                answer = await api.post(
                    "/api/workflows",
                    content=msgspec.json.encode(workflow),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                )
                if answer.status_code != 201:
                    raise BenchFailed(f"{CHAOS}: creating a workflow answered {answer.status_code}: {answer.text}")
                workflows.append(answer.json()["id"])
            users.append(
                ChaosUser(number, server, token, user_id, workflows, answers, uploads, body["password"], body["email"])
            )
    return users


async def _left_behind(cluster: Cluster) -> tuple[dict[str, Any], list[int]]:
    """Connections and processes still there once `roi serve` stopped, given LEFT_BEHIND_S for the servers to see
    the last sockets close (PostgreSQL's backends exit on their next read)."""
    deadline = time.monotonic() + LEFT_BEHIND_S
    while True:
        left, leaked = await _connections(cluster), cluster.leaked_pids()
        if (not left["postgres"] and not left["redis"] and not leaked) or time.monotonic() > deadline:
            return left, leaked
        await asyncio.sleep(0.2)


async def _sample_rss(cluster: Cluster, rss: Rss, answers: Answers, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        cluster.note_pids()
        rss.sample({**cluster.api_processes(), **cluster.dependency_processes()}, answers.now())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), RSS_SAMPLE_S)


async def _until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise BenchFailed(f"{CHAOS}: not {what} within {timeout_s:g} s")
        await asyncio.sleep(0.1)


async def _settle(cluster: Cluster, users: list[ChaosUser], watches: list[ChannelWatch]) -> bool:
    """Until no run is queued or running and no upload processing, then until every socket caught up."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        try:
            active = await _fetchval(
                cluster,
                "SELECT (SELECT count(*) FROM roi_workflows WHERE status IN ('queued', 'running'))"
                " + (SELECT count(*) FROM uploads WHERE status = 'processing')",
            )
        except (OSError, asyncpg.PostgresError):
            active = -1
        if active == 0:
            break
        await asyncio.sleep(0.5)
    else:
        return False
    catch_up = time.monotonic() + CATCH_UP_S
    while time.monotonic() < catch_up:
        counters = await _counters(cluster, users)
        if all((watch.last_seq or 0) >= counter for watch, counter in zip(watches, counters, strict=True)):
            break
        await asyncio.sleep(0.1)
    return True


async def _counters(cluster: Cluster, users: list[ChaosUser]) -> list[int]:
    from bench.chaos_cluster import NAMESPACE

    keys = EventKeys(NAMESPACE)
    redis = Redis.from_url(cluster.redis_url)
    try:
        return [int(await redis.get(keys.sequence(user_channel(user.user_id))) or 0) for user in users]
    finally:
        await redis.aclose()


async def _fetchval(cluster: Cluster, query: str) -> Any:
    connection = await asyncpg.connect(asyncpg_dsn(cluster.database_url), timeout=5)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


async def _fetch(cluster: Cluster, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(cluster.database_url), timeout=5)
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


async def _connections(cluster: Cluster) -> dict[str, Any]:
    """Other clients' connections: PostgreSQL's by application, Redis's by name; our own probes not counted."""
    rows = await _fetch(
        cluster,
        "SELECT coalesce(nullif(application_name, ''), '?') AS app, count(*) AS n FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1 ORDER BY 1",
    )
    redis = Redis.from_url(cluster.redis_url)
    try:
        clients = await redis.client_list()
        own = await redis.client_id()
    finally:
        await redis.aclose()
    others = [client for client in clients if int(client["id"]) != own]
    return {
        "postgres": sum(int(row["n"]) for row in rows),
        "postgres_by_application": {row["app"]: int(row["n"]) for row in rows},
        "redis": len(others),
    }


async def _checks(
    cluster: Cluster,
    users: list[ChaosUser],
    watches: list[ChannelWatch],
    answers: Answers,
    uploads: Uploads,
    log: FaultLog,
) -> list[Check]:
    checks = [await _runs_check(cluster), *await _results_check(cluster)]
    checks.append(await _uploads_check(cluster, users, uploads))
    checks.append(await _events_check(cluster, users, watches))
    checks += _http_checks(answers, log)
    checks.append(
        Check(
            "roi serve stayed up",
            not log.serve_exits,
            f"{len(log.serve_exits)} exit(s) of its own: {'; '.join(log.serve_exits[:5])}"
            if log.serve_exits
            else "yes",
        )
    )
    checks.append(
        Check("every fault injected, every cut upload resumed", not log.problems, "; ".join(log.problems[:5]) or "yes")
    )
    if log.revocations:
        async with httpx.AsyncClient(base_url=cluster.base_url, timeout=10.0) as client:
            for revocation in log.revocations:
                revocation.accepted_after += await probe_revoked(client, revocation.token)
        accepted = sum(len(revocation.accepted_after) for revocation in log.revocations)
        checks.append(
            Check(
                "no request with a revoked token succeeded after 1 s",
                accepted == 0,
                f"{len(log.revocations)} token(s) revoked; {accepted} request(s) with one were accepted",
            )
        )
        with_socket = [revocation for revocation in log.revocations if revocation.socket_open]
        unclosed = [r.socket_closes for r in with_socket if CloseCode.UNAUTHORIZED not in r.socket_closes]
        checks.append(
            Check(
                "every WebSocket of a revoked token closed with 4401 within 1 s",
                not unclosed,
                f"{len(with_socket)} of {len(log.revocations)} revoked token(s) had a WebSocket open; {len(unclosed)} "
                "not closed with 4401" + (f" (their close codes: {unclosed[:5]})" if unclosed else ""),
            )
        )
    return checks


async def _runs_check(cluster: Cluster) -> Check:
    rows = await _fetch(
        cluster,
        "SELECT status, count(*) AS n, count(*) FILTER (WHERE coalesce(error, '') = '') AS"
        " silent FROM roi_workflows GROUP BY status",
    )
    by_status = {row["status"]: int(row["n"]) for row in rows}
    stuck = sum(count for status, count in by_status.items() if status in ("queued", "running"))
    silent = sum(int(row["silent"]) for row in rows if row["status"] == "failed")
    return Check(
        "every run ended, every failure with a reason",
        stuck == 0 and silent == 0,
        f"workflows by status {dict(sorted(by_status.items()))}; {stuck} not final; {silent} failed without a reason",
    )


async def _results_check(cluster: Cluster) -> list[Check]:
    """Every stored result recomputed in this process from the workflow's inputs and seed (domain/analysis is pure)."""
    rows = await _fetch(
        cluster,
        "SELECT w.id, w.cash_flows, w.parameters, r.metrics, r.simulation FROM roi_workflows w"
        " JOIN workflow_results r ON r.workflow_id = w.id",
    )
    wrong: list[str] = []
    for row in rows:
        parameters = json.loads(row["parameters"]) if isinstance(row["parameters"], str) else row["parameters"]
        state = RunState(
            raw_cash_flows=list(row["cash_flows"]),
            discount_rate=float(parameters["discount_rate"]),
            simulations=int(parameters.get("simulations", 0)),
            volatility=float(parameters.get("volatility", 0.0)),
            seed=parameters.get("seed"),
            progress=_no_progress,
        )
        for kind in ("ingest", "validate", "analyze", *(("simulate",) if state.simulations else ()), "report"):
            await STEP_EXECUTORS[kind](state)
        stored = {"metrics": _json(row["metrics"]), "simulation": _json(row["simulation"])}
        if json.loads(json.dumps(state.result)) != stored:
            wrong.append(str(row["id"]))
    with_simulation = sum(1 for row in rows if row["simulation"] is not None)
    return [
        Check(
            "every succeeded result equals its recomputation",
            not wrong and bool(rows),
            f"{len(rows)} results ({with_simulation} with a seeded simulation) recomputed; {len(wrong)} differ"
            + (f": {wrong[:5]}" if wrong else ""),
        )
    ]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _no_progress(_: float) -> None:
    """Recomputing reports no progress."""


async def _uploads_check(cluster: Cluster, users: list[ChaosUser], uploads: Uploads) -> Check:
    """Each finished upload read back: the client's sha256 and a parse of the ledger's rows."""
    tokens = {user.user_id: user.token for user in users}
    owners = {str(row["id"]): str(row["owner_id"]) for row in await _fetch(cluster, "SELECT id, owner_id FROM uploads")}
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30.0) as client:
        for upload in uploads.finished:
            owner = owners.get(upload.id)
            if owner is None:
                problems.append(f"{upload.id}: not in the database")
                continue
            bearer = {"Authorization": f"Bearer {tokens[owner]}"}
            content = await client.get(f"/api/uploads/{upload.id}/content", headers=bearer)
            digest = hashlib.sha256(content.content).hexdigest()
            if content.status_code != 200 or digest != upload.sha256:
                problems.append(f"{upload.id}: content {content.status_code}, {len(content.content)} B, sha256 differs")
                continue
            state = (await client.get(f"/api/uploads/{upload.id}", headers=bearer)).json()
            if state.get("status") != "ready" or state.get("rows") != upload.rows:
                problems.append(
                    f"{upload.id}: {state.get('status')} with {state.get('rows')} rows, {state.get('error')}"
                )
    problems += uploads.overstated
    return Check(
        "every finished upload stored whole and parsed; none acknowledged beyond what was stored",
        not problems and bool(uploads.finished),
        f"{len(uploads.finished)} finished ({uploads.resumed} resumed after a failure, {uploads.abandoned} abandoned "
        f"by the client); {len(problems)} problem(s)" + (f": {problems[:5]}" if problems else ""),
    )


async def _events_check(cluster: Cluster, users: list[ChaosUser], watches: list[ChannelWatch]) -> Check:
    counters = await _counters(cluster, users)
    missing_at_end = sum(max(0, c - (w.last_seq or 0)) for w, c in zip(watches, counters, strict=True))
    gaps = sum(watch.gaps for watch in watches)
    out_of_order = sum(watch.out_of_order for watch in watches)
    problems = [problem for watch in watches for problem in watch.problems]
    return Check(
        "every subscriber saw every event in order, or was told recovered: false",
        gaps == 0 and out_of_order == 0 and missing_at_end == 0,
        f"{sum(w.received for w in watches)} events received of {sum(counters)} published on {len(watches)} channels,"
        f" over {sum(w.connections for w in watches)} connections; {gaps} unannounced gaps, {out_of_order} out of "
        f"order, {missing_at_end} missing at the end; {sum(w.unrecovered for w in watches)} subscription(s) told "
        f"recovered: false" + (f"; {problems[:5]}" if problems else ""),
    )


def _inside(at_s: float, windows: list[tuple[float, float]]) -> bool:
    return any(start <= at_s <= end + GRACE_S for start, end in windows)


def _http_checks(answers: Answers, log: FaultLog) -> list[Check]:
    down = log.windows(DEPENDENCY_DOWN)
    cut = log.windows(CONNECTIONS_CUT)
    stray_503 = [at for at in answers.unavailable_at if not _inside(at, down)]
    stray_lost = [at for at in answers.lost_at if not _inside(at, cut)]
    statuses = dict(sorted(answers.statuses.items()))
    return [
        Check(
            "no HTTP answer other than 2xx/3xx/4xx/503",
            not answers.unexpected,
            f"{sum(statuses.values())} answers by status {statuses}"
            + (f"; {answers.unexpected[:5]}" if answers.unexpected else ""),
        ),
        Check(
            "503 only while a dependency was down",
            not stray_503,
            f"{len(answers.unavailable_at)} 503s, {len(stray_503)} outside the fault windows (+{GRACE_S:g} s)"
            + (f" at t={[round(at, 1) for at in stray_503[:10]]}" if stray_503 else ""),
        ),
        Check(
            "requests lost only while connections were cut",
            not stray_lost,
            f"{len(answers.lost_at)} lost, {len(stray_lost)} outside the windows of a kill or restart of the API"
            + (f" at t={[round(at, 1) for at in stray_lost[:10]]}" if stray_lost else ""),
        ),
    ]


def _report(
    log: FaultLog,
    answers: Answers,
    uploads: Uploads,
    watches: list[ChannelWatch],
    rss: Rss,
    checks: list[Check],
    notes: list[str],
    seed: int,
    load_s: float,
    settle_s: float,
    users: list[ChaosUser],
) -> dict[str, Any]:
    by_role: dict[str, dict[str, Any]] = {}
    for pid, process in sorted(rss.processes.items(), key=lambda item: item[1].first_s):
        role = by_role.setdefault(process.role, {"processes": 0, "start_mib": 0.0, "end_mib": 0.0, "peak_mib": 0.0})
        role["processes"] += 1
        if process.first_s == 0.0:
            role["start_mib"] += process.first_mib
        if process.last_s >= max(p.last_s for p in rss.processes.values()) - 0.01:
            role["end_mib"] += process.last_mib
        role["peak_mib"] = max(role["peak_mib"], process.peak_mib)
        role.setdefault("pids", []).append(
            {
                "pid": pid,
                "from_s": round(process.first_s, 1),
                "to_s": round(process.last_s, 1),
                "first_mib": round(process.first_mib, 1),
                "last_mib": round(process.last_mib, 1),
                "peak_mib": round(process.peak_mib, 1),
            }
        )
    close_codes: dict[int, int] = {}
    for watch in watches:
        for code, count in watch.close_codes.items():
            close_codes[code] = close_codes.get(code, 0) + count
    faults_by_kind: dict[str, int] = {}
    for fault in log.faults:
        faults_by_kind[fault.kind] = faults_by_kind.get(fault.kind, 0) + 1
    return {
        "seed": seed,
        "users": len(users),
        "load_s": round(load_s, 1),
        "settle_s": round(settle_s, 1),
        "notes": notes,
        "faults": [fault.__dict__ for fault in log.faults],
        "faults_by_kind": faults_by_kind,
        "runs_started": sum(user.runs_started for user in users),
        "http_statuses": {str(k): v for k, v in sorted(answers.statuses.items())},
        "requests_lost": len(answers.lost_at),
        "uploads_finished": len(uploads.finished),
        "ws_close_codes": {str(k): v for k, v in sorted(close_codes.items())},
        "rss_by_role": by_role,
        "checks": [check.__dict__ for check in checks],
        "load_average": list(os.getloadavg()),
    }


def _print(report: dict[str, Any]) -> None:
    click.echo(
        f"\n{CHAOS}: seed {report['seed']}, {report['users']} users, load {report['load_s']} s, settled in "
        f"{report['settle_s']} s; {len(report['faults'])} faults {report['faults_by_kind']}"
    )
    click.echo(
        f"  {sum(report['http_statuses'].values())} HTTP answers, {report['requests_lost']} lost; "
        f"{report['runs_started']} runs started; {report['uploads_finished']} uploads finished; "
        f"WebSocket closes by code {report['ws_close_codes']}"
    )
    click.echo("  RSS (MiB) by role: processes seen, sum at start -> sum at end, peak of one process")
    for role, figures in report["rss_by_role"].items():
        click.echo(
            f"    {role:<26} {figures['processes']:>3}  {figures['start_mib']:8.1f} -> {figures['end_mib']:8.1f}"
            f"  peak {figures['peak_mib']:.1f}"
        )
    for check in report["checks"]:
        click.echo(f"  [{'PASS' if check['passed'] else 'FAIL'}] {check['name']}: {check['found']}")
    click.echo(f"  load average {', '.join(f'{value:.2f}' for value in report['load_average'])}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


__all__ = ["CHAOS", "KILL_GRANIAN_WORKER", "run_chaos"]
