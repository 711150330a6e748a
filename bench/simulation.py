"""The simulation scenario of `roi bench`: the heaviest run the API accepts, timed as its owner sees it.

One row, `simulation_1m_runs`: a workflow of 100 cash flows with 1,000,000 Monte Carlo runs (the most `simulations`
allows), run through the API on one `roi worker` process, one run at a time, its latency the workflow's own
`finished_at - started_at`. Why: the run loop was cut down for trivial runs (fewer writes, folded progress), and this
row shows what that did to the runs that are all computation, whose progress must still reach the owner at least
every 250 ms. Its req/s column is runs/s; its server CPU the worker process's per run.
"""

from __future__ import annotations

import asyncio
import datetime
import tempfile
import time
from pathlib import Path

import click
import httpx
import msgspec

from bench.accounts import sign_up
from bench.report import Round, RunSettings, ScenarioResult, pooled_result
from bench.scenarios import SIMULATION_ROW
from bench.service import BenchFailed, expect
from bench.workers import WORKER_CONCURRENCY, WorkerProcesses, forget_queue
from infra.queue import create_queue

RUNS = 1_000_000
FLOWS = [-10_000.0] + [150.0 + 10.0 * (period % 7) for period in range(99)]
WORKFLOW = {
    "name": "bench simulation",
    "cash_flows": FLOWS,
    "parameters": {"discount_rate": 0.05, "simulations": RUNS, "volatility": 0.2, "seed": 20261206},
}
SAMPLES_QUICK = 3
SAMPLES = 5
POLL_S = 0.02
RUN_DEADLINE_S = 120.0
FINAL = ("succeeded", "failed", "cancelled")


class _Created(msgspec.Struct):
    id: str


class _Run(msgspec.Struct):
    status: str
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    error: str | None = None


async def measure_simulation(
    base_url: str, environment: dict[str, str], settings: RunSettings, quick: bool, floor: ScenarioResult
) -> list[ScenarioResult]:
    """`settings.rounds` rounds of SAMPLES runs (SAMPLES_QUICK with --quick), each round on a fresh worker
    process after one warm-up run."""
    samples = SAMPLES_QUICK if quick else SAMPLES
    queue = create_queue(environment["REDIS_URL"], environment["REDIS_NAMESPACE"])
    rounds: list[Round] = []
    try:
        token, _ = await sign_up(base_url, SIMULATION_ROW)
        async with httpx.AsyncClient(
            base_url=base_url, timeout=30.0, headers={"Authorization": f"Bearer {token}"}
        ) as api:
            created = await api.post("/api/workflows", content=msgspec.json.encode(WORKFLOW))
            workflow_id = msgspec.json.decode(expect(created, 201, SIMULATION_ROW), type=_Created).id
            with tempfile.TemporaryDirectory(prefix="roi-bench-simulation-") as work_dir:
                workers = WorkerProcesses(environment, Path(work_dir) / "workers.log", queue)
                for round_number in range(1, settings.rounds + 1):
                    with workers.running(1):
                        await workers.ready(1)
                        await _run_once(api, workflow_id)  # warm-up: NumPy's pages and the pools
                        one = await _round(api, workers, workflow_id, samples)
                    rounds.append(one)
                    click.echo(
                        f"round {round_number}/{settings.rounds} {SIMULATION_ROW}: "
                        + ", ".join(f"{latency:,.0f} ms" for latency in one.latencies_ms),
                        err=True,
                    )
    finally:
        await forget_queue(queue)
    request = (
        f"{RUNS:,} Monte Carlo runs over {len(FLOWS)} cash flows through the API, one at a time, 1 worker process x "
        f"{WORKER_CONCURRENCY} slots: finished_at - started_at"
    )
    return [pooled_result(SIMULATION_ROW, "workers", request, rounds, floor)]


async def _round(api: httpx.AsyncClient, workers: WorkerProcesses, workflow_id: str, samples: int) -> Round:
    latencies_ms: list[float] = []
    cpu_before, client_before, started_s = workers.cpu_s(), time.process_time(), time.perf_counter()
    for _ in range(samples):
        latencies_ms.append(await _run_once(api, workflow_id))
    return Round(
        latencies_ms=latencies_ms,
        rated=samples,
        served=samples,
        errors=0,
        elapsed_s=time.perf_counter() - started_s,
        client_cpu_s=time.process_time() - client_before,
        server_cpu_s=workers.cpu_s() - cpu_before,
    )


async def _run_once(api: httpx.AsyncClient, workflow_id: str) -> float:
    """The run's own duration in ms; a run that does not succeed stops the bench (its figures would be no run's)."""
    expect(await api.post(f"/api/workflows/{workflow_id}/run"), 202, SIMULATION_ROW)
    deadline = time.monotonic() + RUN_DEADLINE_S
    while True:
        answer = await api.get(f"/api/workflows/{workflow_id}")
        run = msgspec.json.decode(expect(answer, 200, SIMULATION_ROW), type=_Run)
        if run.status in FINAL:
            break
        if time.monotonic() > deadline:
            raise BenchFailed(f"{SIMULATION_ROW}: the run had not ended after {RUN_DEADLINE_S:g} s")
        await asyncio.sleep(POLL_S)
    if run.status != "succeeded" or run.started_at is None or run.finished_at is None:
        raise BenchFailed(f"{SIMULATION_ROW}: the run ended {run.status}: {run.error}")
    return (run.finished_at - run.started_at).total_seconds() * 1000
