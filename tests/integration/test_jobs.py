"""Workflows run as background jobs: steps, results, failures, reruns, cancellation, ordering."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import numpy_financial as npf
import pytest
from litestar.testing import AsyncTestClient

from domain.workflows.runs import JOB_CARRIES_FLOWS
from infra.queue import PriorityRedisQueue
from infra.settings import Settings
from tests.integration.jobs_support import (
    running_worker,
    start_run,
    status_of,
    wait_for_status,
    wait_until,
    worker_config,
)
from tests.integration.support import Account
from tests.integration.test_workflows import create

FLOWS = [-1000.0, 300.0, 400.0, 500.0]
LONG_SIMULATION = {"discount_rate": 0.08, "simulations": 1_000_000, "volatility": 0.2, "seed": 1}
LONG_SERIES = [-1000.0, *[120.0] * 40]
"""With LONG_SIMULATION, a second or so: many times a run's first fold."""


async def detail(client: AsyncTestClient, account: Account, workflow_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/api/workflows/{workflow_id}", headers=account.headers)).json()
    return body


async def test_a_run_executes_every_step_and_stores_the_result(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    workflow = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    assert (await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).status_code == 409
    async with running_worker(worker_config(settings)):
        accepted = await start_run(client, alice, workflow["id"])
        assert accepted["status"] == "queued"
        assert accepted["job_id"]
        final = await wait_for_status(client, alice, workflow["id"])

    assert final["status"] == "succeeded"
    assert final["progress"] == 1.0
    done = await detail(client, alice, workflow["id"])
    assert done["job_id"] == accepted["job_id"]
    assert done["queued_at"] <= done["started_at"] <= done["finished_at"]
    assert [(step["kind"], step["status"], step["progress"]) for step in done["steps"]] == [
        (kind, "succeeded", 1.0) for kind in ("ingest", "validate", "analyze", "report")
    ]
    assert all(step["started_at"] <= step["finished_at"] for step in done["steps"])

    result = (await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).json()
    metrics = result["metrics"]
    assert metrics["npv"] == pytest.approx(npf.npv(0.08, FLOWS))
    assert metrics["irr"] == pytest.approx(npf.irr(FLOWS))
    assert metrics["payback_period"] == pytest.approx(2.6)
    assert (metrics["total_invested"], metrics["total_returned"], metrics["periods"]) == (1000.0, 1200.0, 4)
    assert metrics["roi"] == pytest.approx(0.2)
    assert result["simulation"] is None
    assert result["workflow_id"] == workflow["id"]


async def test_a_run_over_at_once_moves_its_workflow_once_and_a_long_one_is_running_meanwhile(
    client: AsyncTestClient, alice: Account, settings: Settings, db: asyncpg.Pool
) -> None:
    """A run over within its first fold writes its workflow once, queued straight to succeeded: no `running` row
    that a reader could catch half-way. A long run is `running` in PostgreSQL while it works."""
    quick = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    long = await create(client, alice, cash_flows=LONG_SERIES, parameters=LONG_SIMULATION)
    table = f"moves_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE TABLE {table} (n serial, workflow_id uuid, status text)")
    await db.execute(
        f"CREATE FUNCTION {table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" INSERT INTO {table} (workflow_id, status) VALUES (NEW.id, NEW.status); RETURN NULL; END $$"
    )
    await db.execute(
        f"CREATE TRIGGER {table} AFTER UPDATE ON roi_workflows FOR EACH ROW"
        f" WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION {table}()"
    )
    try:
        async with running_worker(worker_config(settings)):
            for workflow in (quick, long):
                await start_run(client, alice, workflow["id"])
                assert (await wait_for_status(client, alice, workflow["id"]))["status"] == "succeeded"
        moves = await db.fetch(f"SELECT workflow_id::text, status FROM {table} ORDER BY n")
    finally:
        await db.execute(f"DROP TRIGGER {table} ON roi_workflows")
        await db.execute(f"DROP FUNCTION {table}()")
        await db.execute(f"DROP TABLE {table}")
    assert [move["status"] for move in moves if move["workflow_id"] == quick["id"]] == ["queued", "succeeded"]
    assert [move["status"] for move in moves if move["workflow_id"] == long["id"]] == ["queued", "running", "succeeded"]
    done = await detail(client, alice, quick["id"])
    assert done["queued_at"] <= done["started_at"] <= done["finished_at"]


async def test_a_short_series_travels_with_its_job_exactly_and_a_long_one_is_read_by_the_worker(
    client: AsyncTestClient, alice: Account, settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    """Both runs give the metrics of their own flows, to the last digit: the job's copy of the short series is the
    series, and the long one, left out of its job, is read from PostgreSQL."""
    short_flows = [-1000.0, 333.3333333333333, 0.30000000000000004, 700.0000000000001]
    long_flows = [-5000.0, *[0.1 * (n + 1) + 1 / 3 for n in range(JOB_CARRIES_FLOWS)]]
    short = await create(client, alice, cash_flows=short_flows, parameters={"discount_rate": 0.07})
    long = await create(client, alice, cash_flows=long_flows, parameters={"discount_rate": 0.07})
    short_job, long_job = [
        await app_queue.job((await start_run(client, alice, workflow["id"]))["job_id"]) for workflow in (short, long)
    ]
    assert short_job is not None
    assert long_job is not None
    carried = (short_job.kwargs or {})["inputs"]
    assert carried["cash_flows"] == short_flows
    assert (carried["owner_id"], carried["steps"]) == (alice.id, ["ingest", "validate", "analyze", "report"])
    assert "inputs" not in (long_job.kwargs or {})
    async with running_worker(worker_config(settings)):
        for workflow, flows in ((short, short_flows), (long, long_flows)):
            assert (await wait_for_status(client, alice, workflow["id"]))["status"] == "succeeded"
            result = (await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).json()
            assert result["metrics"]["npv"] == pytest.approx(npf.npv(0.07, flows), rel=1e-12)
            assert result["metrics"]["periods"] == len(flows)


async def test_a_seeded_simulation_is_reproducible_and_a_rerun_replaces_the_result(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    parameters = {"discount_rate": 0.1, "simulations": 20_000, "volatility": 0.2, "seed": 42}
    workflow = await create(client, alice, cash_flows=FLOWS, parameters=parameters)
    results = []
    async with running_worker(worker_config(settings)):
        for _ in range(2):
            await start_run(client, alice, workflow["id"])
            assert (await wait_for_status(client, alice, workflow["id"]))["status"] == "succeeded"
            results.append((await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).json())
    first, second = results
    assert first["simulation"]["runs"] == 20_000
    assert first["simulation"]["npv_p5"] < first["metrics"]["npv"] < first["simulation"]["npv_p95"]
    assert second["simulation"] == first["simulation"], "same seed, same simulation"
    assert second["finished_at"] > first["finished_at"], "the rerun's result replaced the first"


async def test_a_failing_step_fails_the_workflow_with_an_actionable_error(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    workflow = await create(client, alice, cash_flows=[100.0, 200.0], parameters={"discount_rate": 0.1})
    async with running_worker(worker_config(settings)):
        await start_run(client, alice, workflow["id"])
        final = await wait_for_status(client, alice, workflow["id"])
    assert final["status"] == "failed"
    done = await detail(client, alice, workflow["id"])
    assert done["error"] == "validate: cash flows contain no negative value (nothing was invested)"
    assert [(step["kind"], step["status"]) for step in done["steps"]] == [
        ("ingest", "succeeded"),
        ("validate", "failed"),
        ("analyze", "skipped"),
        ("report", "skipped"),
    ]
    assert done["steps"][1]["error"] == done["error"]
    assert (await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).status_code == 409


async def test_run_and_cancel_refuse_what_the_state_machine_forbids(
    client: AsyncTestClient, alice: Account, bob: Account, db: asyncpg.Pool
) -> None:
    workflow = await create(client, alice)
    path = f"/api/workflows/{workflow['id']}"
    assert (await client.post(f"{path}/cancel", headers=alice.headers)).status_code == 409, "a draft is not running"
    assert (await client.post(f"{path}/run", headers=bob.headers)).status_code == 404
    assert (await client.post(f"{path}/cancel", headers=bob.headers)).status_code == 404
    assert (await client.get(f"{path}/result", headers=bob.headers)).status_code == 404
    await start_run(client, alice, workflow["id"])
    again = await client.post(f"{path}/run", headers=alice.headers)
    assert again.status_code == 409
    assert "queued" in again.json()["detail"]
    await client.delete(path, headers=alice.headers)
    assert (await client.post(f"{path}/run", headers=alice.headers)).status_code == 404


async def test_a_queued_run_cancelled_never_starts(client: AsyncTestClient, alice: Account, settings: Settings) -> None:
    workflow = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    await start_run(client, alice, workflow["id"])
    cancelled = await client.post(f"/api/workflows/{workflow['id']}/cancel", headers=alice.headers)
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    async with running_worker(worker_config(settings)) as worker:
        await wait_until(lambda: _lanes_empty(worker), "the worker had its chance at the lanes")
    done = await detail(client, alice, workflow["id"])
    assert done["status"] == "cancelled"
    assert done["started_at"] is None
    assert {step["status"] for step in done["steps"]} == {"skipped"}
    assert (await client.post(f"/api/workflows/{workflow['id']}/cancel", headers=alice.headers)).status_code == 409


async def _lanes_empty(worker: Any) -> bool:
    return sum((await worker.queue.depths()).values()) == 0


async def test_a_running_simulation_stops_within_a_second_of_cancel(
    client: AsyncTestClient, alice: Account, settings: Settings, db: asyncpg.Pool
) -> None:
    flows = [-5000.0] + [100.0] * 99
    parameters = {"discount_rate": 0.05, "simulations": 1_000_000, "volatility": 0.3, "seed": 1}
    workflow = await create(client, alice, cash_flows=flows, parameters=parameters)
    async with running_worker(worker_config(settings)) as worker:
        accepted = await start_run(client, alice, workflow["id"])

        async def simulating() -> bool:
            status = await status_of(client, alice, workflow["id"])
            return status["current_step"] == "simulate" and status["progress"] > 0.6

        await wait_until(simulating, "the simulation is under way")
        cancelled = await client.post(f"/api/workflows/{workflow['id']}/cancel", headers=alice.headers)
        cancelled_at = time.monotonic()
        assert cancelled.json()["status"] == "cancelled"
        progress_at_cancel = (await status_of(client, alice, workflow["id"]))["progress"]

        async def job_finished() -> bool:
            job = await worker.queue.job(accepted["job_id"])
            return job is not None and job.status == "complete"

        await wait_until(job_finished, "the job stopped", deadline_s=5)
        stopped_after = time.monotonic() - cancelled_at
    assert stopped_after < 1.0, f"the running job took {stopped_after:.2f}s to stop"
    done = await detail(client, alice, workflow["id"])
    assert done["status"] == "cancelled"
    assert done["progress"] == progress_at_cancel, "no progress was written after the cancel"
    steps = {step["kind"]: step["status"] for step in done["steps"]}
    assert steps == {
        "ingest": "succeeded",
        "validate": "succeeded",
        "analyze": "succeeded",
        "simulate": "cancelled",
        "report": "skipped",
    }
    assert (await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).status_code == 409


async def test_deleting_a_running_workflow_stops_its_job(
    client: AsyncTestClient, alice: Account, settings: Settings, db: asyncpg.Pool
) -> None:
    parameters = {"discount_rate": 0.05, "simulations": 1_000_000, "volatility": 0.3}
    workflow = await create(client, alice, cash_flows=[-5000.0] + [100.0] * 99, parameters=parameters)
    async with running_worker(worker_config(settings)) as worker:
        accepted = await start_run(client, alice, workflow["id"])
        await wait_for_status(client, alice, workflow["id"], ("running",))
        assert (await client.delete(f"/api/workflows/{workflow['id']}", headers=alice.headers)).status_code == 204

        async def job_finished() -> bool:
            job = await worker.queue.job(accepted["job_id"])
            return job is not None and job.status == "complete"

        await wait_until(job_finished, "the job stopped", deadline_s=5)
    assert await db.fetchval("SELECT count(*) FROM workflow_results") == 0


async def test_a_long_simulation_does_not_hold_up_a_short_job(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    long = await create(
        client,
        alice,
        cash_flows=[-5000.0] + [100.0] * 99,
        parameters={"discount_rate": 0.05, "simulations": 1_000_000, "volatility": 0.3},
    )
    short = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    async with running_worker(worker_config(settings, concurrency=2)):
        await start_run(client, alice, long["id"])
        await wait_for_status(client, alice, long["id"], ("running",))
        await start_run(client, alice, short["id"])
        assert (await wait_for_status(client, alice, short["id"]))["status"] == "succeeded"
        assert (await status_of(client, alice, long["id"]))["status"] == "running", "the short job finished first"
        await client.post(f"/api/workflows/{long['id']}/cancel", headers=alice.headers)


async def test_progress_is_visible_while_a_step_runs(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    workflow = await create(
        client,
        alice,
        cash_flows=[-5000.0] + [100.0] * 99,
        parameters={"discount_rate": 0.05, "simulations": 1_000_000, "volatility": 0.3},
    )
    seen: list[float] = []
    async with running_worker(worker_config(settings)):
        await start_run(client, alice, workflow["id"])

        async def finished() -> bool:
            status = await status_of(client, alice, workflow["id"])
            if status["current_step"] == "simulate":
                seen.append(status["progress"])
            return status["status"] in ("succeeded", "failed")

        await wait_until(finished, "the run finished")
    distinct = sorted(set(seen))
    assert len(distinct) >= 3, f"progress should advance during the simulation, saw {distinct}"
    assert seen == sorted(seen), "progress never goes back"
