"""Nothing lost or stuck, with real `roi worker` processes: SIGKILL, SIGTERM, start-up race, a job Redis lost."""

from __future__ import annotations

import contextlib
import datetime
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from saq import Status

from db.pools import create_engine
from domain.cache import Cache
from domain.events.bus import EventBus, EventKeys, workflow_channel
from domain.services import Services
from domain.workflows.notifier import WorkflowNotifier
from domain.workflows.run_state import RunStore
from domain.workflows.runner import RunJournal
from infra.jobs import enqueue_workflow_run
from infra.queue import PriorityRedisQueue
from infra.settings import Settings
from tests.integration.jobs_support import (
    TERMINAL,
    start_run,
    status_of,
    wait_for_status,
    wait_until,
    worker_process,
)
from tests.integration.queue_support import forget_queue, private_queue, queue_name, reaped, wait_for_exit
from tests.integration.support import Account
from tests.integration.test_workflows import create
from workers.worker import MAX_REQUEUES, Reconciler

SAQ_TERMINAL = frozenset({Status.COMPLETE, Status.FAILED, Status.ABORTED})

FLOWS = [-1000.0, 300.0, 400.0, 500.0]
LONG_FLOWS = [-5000.0] + [100.0] * 99
FAST_RECONCILER = {"WORKER_LOST_AFTER_S": "2", "WORKER_RECONCILE_INTERVAL_S": "0.5"}
FAILED_AFTER_KILL_S = 10.0
RACING_RUNS = 30


async def detail(client: AsyncTestClient[Litestar], account: Account, workflow_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/workflows/{workflow_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_until_simulating(client: AsyncTestClient[Litestar], account: Account, workflow_id: str) -> None:
    async def simulating() -> bool:
        status = await status_of(client, account, workflow_id)
        assert status["status"] in ("queued", "running"), status
        return bool(status["current_step"] == "simulate" and status["progress"] > 0.6)

    await wait_until(simulating, "the simulation is under way")


async def test_a_worker_killed_mid_job_fails_the_run_within_a_bound(
    client: AsyncTestClient[Litestar], alice: Account, settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    parameters = {"discount_rate": 0.05, "simulations": 1_000_000, "volatility": 0.3, "seed": 3}
    workflow = await create(client, alice, cash_flows=LONG_FLOWS, parameters=parameters)
    with reaped() as processes:
        processes.append(first := worker_process(settings, **FAST_RECONCILER))
        await start_run(client, alice, workflow["id"])
        await wait_until_simulating(client, alice, workflow["id"])
        first.kill()
        killed_at = time.monotonic()
        await wait_for_exit(first, deadline_s=5)
        assert (await status_of(client, alice, workflow["id"]))["status"] == "running", "nobody noticed yet"
        processes.append(worker_process(settings, **FAST_RECONCILER))

        seen: dict[str, Any] = {}

        async def ended() -> bool:
            seen.update(await status_of(client, alice, workflow["id"]))
            return seen["status"] in TERMINAL

        await wait_until(ended, "the lost run ends", deadline_s=FAILED_AFTER_KILL_S)
        ended_after = time.monotonic() - killed_at
    assert seen["status"] == "failed", seen
    assert ended_after <= FAILED_AFTER_KILL_S
    done = await detail(client, alice, workflow["id"])
    assert done["error"].startswith("simulate: the worker running this workflow stopped"), done["error"]
    assert [(step["kind"], step["status"]) for step in done["steps"]] == [
        ("ingest", "succeeded"),
        ("validate", "succeeded"),
        ("analyze", "succeeded"),
        ("simulate", "failed"),
        ("report", "skipped"),
    ]
    assert done["steps"][3]["error"] == done["error"]
    assert done["finished_at"] is not None
    assert (await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).status_code == 409


async def test_sigterm_hands_a_running_job_back_and_the_next_worker_finishes_it(
    client: AsyncTestClient[Litestar], alice: Account, settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    parameters = {"discount_rate": 0.05, "simulations": 400_000, "volatility": 0.3, "seed": 5}
    workflow = await create(client, alice, cash_flows=LONG_FLOWS, parameters=parameters)
    with reaped() as processes:
        processes.append(first := worker_process(settings))
        accepted = await start_run(client, alice, workflow["id"])
        await wait_until_simulating(client, alice, workflow["id"])
        first.send_signal(signal.SIGTERM)
        assert await wait_for_exit(first, deadline_s=10) == 0

        handed_back = await detail(client, alice, workflow["id"])
        assert (handed_back["status"], handed_back["job_id"]) == ("queued", accepted["job_id"])
        assert {step["status"] for step in handed_back["steps"]} == {"pending"}
        job = await app_queue.job(accepted["job_id"])
        assert job is not None
        assert job.status == Status.QUEUED, "SAQ re-queued the job"
        assert await app_queue.depths() == {"high": 0, "normal": 1, "low": 0}

        processes.append(worker_process(settings))
        final = await wait_for_status(client, alice, workflow["id"])
    assert final["status"] == "succeeded", final
    done = await detail(client, alice, workflow["id"])
    assert done["job_id"] == accepted["job_id"], "the same run, restarted"
    assert {step["status"] for step in done["steps"]} == {"succeeded"}
    result = (await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).json()
    assert result["simulation"]["runs"] == 400_000


async def test_runs_queued_while_a_worker_starts_all_succeed(
    client: AsyncTestClient[Litestar], alice: Account, settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    workflows = [
        await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08}) for _ in range(RACING_RUNS)
    ]
    with reaped() as processes:
        processes.append(worker_process(settings))
        job_ids = [(await start_run(client, alice, workflow["id"]))["job_id"] for workflow in workflows]
        statuses: dict[str, str] = {}

        async def all_ended() -> bool:
            for workflow in workflows:
                if statuses.get(workflow["id"]) not in TERMINAL:
                    statuses[workflow["id"]] = (await status_of(client, alice, workflow["id"]))["status"]
            return all(status in TERMINAL for status in statuses.values())

        await wait_until(all_ended, f"the {RACING_RUNS} runs end", deadline_s=30)

        async def jobs_settled() -> bool:
            # The run's end is committed before its job returns and SAQ marks it: wait for SAQ before the worker goes.
            return all(job is not None and job.status in SAQ_TERMINAL for job in await app_queue.jobs(job_ids))

        await wait_until(jobs_settled, "SAQ records every job's end", deadline_s=10)
    assert sorted(statuses.values()) == ["succeeded"] * RACING_RUNS
    jobs = await app_queue.jobs(job_ids)
    assert all(job is not None for job in jobs)
    assert [(job.status, job.attempts, job.error) for job in jobs if job is not None] == [
        (Status.COMPLETE, 1, None)
    ] * RACING_RUNS, "no job was swept, retried or failed"


async def test_a_dequeued_job_is_active_before_a_sweep_can_see_it(settings: Settings) -> None:
    """SAQ's start-up race made deterministic: a new worker's first sweep right after another worker's dequeue."""
    async with private_queue(settings) as lanes:
        assert await lanes.enqueue("run_workflow", key="racing", timeout=60) is not None
        dequeued = await lanes.dequeue(timeout=1)
        assert dequeued is not None
        assert dequeued.key == "racing"
        stored = await lanes.job("racing")
        assert stored is not None
        assert stored.status == Status.ACTIVE, "marked active before it entered the active list"
        assert await lanes.sweep() == [], "a sweep now must not take the job its worker is about to start"
        after = await lanes.job("racing")
        assert after is not None
        assert (after.status, after.error) == (Status.ACTIVE, None)


async def test_a_queued_run_whose_job_redis_lost_is_queued_again(
    client: AsyncTestClient[Litestar],
    alice: Account,
    settings: Settings,
    app_queue: PriorityRedisQueue,
    db: asyncpg.Pool,
) -> None:
    workflow = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    accepted = await start_run(client, alice, workflow["id"])
    assert await app_queue.job(accepted["job_id"]) is not None
    assert settings.redis_url
    await forget_queue(settings.redis_url, queue_name(settings))
    assert await app_queue.job(accepted["job_id"]) is None
    assert await app_queue.depths() == {"high": 0, "normal": 0, "low": 0}
    assert (await status_of(client, alice, workflow["id"]))["status"] == "queued"

    environment = {"WORKER_REQUEUE_AFTER_S": "0.5", "WORKER_RECONCILE_INTERVAL_S": "0.5"}
    with reaped() as processes:
        processes.append(worker_process(settings, **environment))
        final = await wait_for_status(client, alice, workflow["id"])
    assert final["status"] == "succeeded", final
    done = await detail(client, alice, workflow["id"])
    assert done["job_id"] == accepted["job_id"], "the same run, queued again"
    assert await db.fetchval("SELECT count(*) FROM workflow_results WHERE job_id = $1", accepted["job_id"]) == 1


async def test_a_job_popped_by_a_worker_that_died_at_once_is_not_stuck(
    client: AsyncTestClient[Litestar], alice: Account, settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    """A worker SIGKILLed between its BLMPOP and recording the job: the job is in no lane and in no active list."""
    workflow = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    accepted = await start_run(client, alice, workflow["id"])
    popped = await app_queue.redis.blmpop(1, len(app_queue.lanes), *app_queue.lanes, direction="LEFT", count=1)
    assert popped is not None
    assert popped[1] == [app_queue.job_id(accepted["job_id"]).encode()]

    environment = {"WORKER_REQUEUE_AFTER_S": "0.5", "WORKER_RECONCILE_INTERVAL_S": "0.5"}
    with reaped() as processes:
        processes.append(worker_process(settings, **environment))

        async def ended() -> bool:
            return (await status_of(client, alice, workflow["id"]))["status"] in TERMINAL

        await wait_until(ended, "the run whose job was popped and lost ends", deadline_s=10)
    assert (await status_of(client, alice, workflow["id"]))["status"] == "succeeded"


async def test_a_high_run_starts_at_once_when_every_slot_is_busy_with_low_ones(
    client: AsyncTestClient[Litestar], alice: Account, settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    long_parameters = {"discount_rate": 0.05, "simulations": 1_000_000, "volatility": 0.3}
    busy = [
        await create(client, alice, cash_flows=LONG_FLOWS, parameters=long_parameters, priority="low") for _ in range(2)
    ]
    waiting = [await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08}, priority="low")]
    urgent = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08}, priority="high")
    with reaped() as processes:
        processes.append(worker_process(settings))  # two slots for every lane, one express slot for `high`
        for workflow in busy:
            await start_run(client, alice, workflow["id"])
        for workflow in busy:
            await wait_for_status(client, alice, workflow["id"], ("running",))
        await start_run(client, alice, waiting[0]["id"])
        await start_run(client, alice, urgent["id"])
        assert (await wait_for_status(client, alice, urgent["id"]))["status"] == "succeeded"
        assert (await status_of(client, alice, waiting[0]["id"]))["status"] == "queued", "the low run still waits"
        for workflow in busy:
            assert (await status_of(client, alice, workflow["id"]))["status"] == "running"
            await client.post(f"/api/workflows/{workflow['id']}/cancel", headers=alice.headers)


async def test_a_queued_run_whose_job_failed_before_claiming_it_is_queued_again(
    client: AsyncTestClient[Litestar], alice: Account, settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    """The job raised before its run's first write (PostgreSQL restarting under the claim): SAQ recorded it failed
    while the run stayed queued, which once left the run queued for ever."""
    workflow = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    accepted = await start_run(client, alice, workflow["id"])
    job = await app_queue.job(accepted["job_id"])
    assert job is not None
    await app_queue.redis.lrem(app_queue.lane(job), 0, job.id)
    await app_queue.finish(job, Status.FAILED, error="ConnectionResetError: [Errno 104] Connection reset by peer")
    failed = await app_queue.job(accepted["job_id"])
    assert failed is not None
    assert failed.status == Status.FAILED
    assert (await status_of(client, alice, workflow["id"]))["status"] == "queued"

    environment = {"WORKER_REQUEUE_AFTER_S": "0.5", "WORKER_RECONCILE_INTERVAL_S": "0.5"}
    with reaped() as processes:
        processes.append(worker_process(settings, **environment))

        async def ended() -> bool:
            return (await status_of(client, alice, workflow["id"]))["status"] in TERMINAL

        await wait_until(ended, "the run whose job failed before claiming it ends", deadline_s=15)
    assert (await status_of(client, alice, workflow["id"]))["status"] == "succeeded"


async def test_a_job_that_keeps_failing_before_its_claim_fails_its_run_with_the_jobs_error(
    client: AsyncTestClient[Litestar],
    alice: Account,
    settings: Settings,
    app_queue: PriorityRedisQueue,
    db: asyncpg.Pool,
) -> None:
    """Every claim of the run raises (a trigger refuses it): the reconciler queues the failed job again
    `MAX_REQUEUES` times, then fails the run with the job's error rather than queuing it for ever."""
    workflow = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    name = f"refuse_claim_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE SEQUENCE {name}")
    await db.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('{name}');"
        " RAISE EXCEPTION 'claim refused by the test'; END $$"
    )
    await db.execute(
        f"CREATE TRIGGER {name} BEFORE UPDATE ON roi_workflows FOR EACH ROW"
        f" WHEN (OLD.id = '{workflow['id']}' AND OLD.status = 'queued' AND NEW.status IN ('running', 'succeeded'))"
        f" EXECUTE FUNCTION {name}()"
    )
    try:
        await start_run(client, alice, workflow["id"])
        environment = {"WORKER_REQUEUE_AFTER_S": "0.2", "WORKER_RECONCILE_INTERVAL_S": "0.2"}
        with reaped() as processes:
            processes.append(worker_process(settings, **environment))
            final = await wait_for_status(client, alice, workflow["id"])
        claims = await db.fetchval(f"SELECT last_value FROM {name}")
    finally:
        await db.execute(f"DROP TRIGGER {name} ON roi_workflows")
        await db.execute(f"DROP FUNCTION {name}()")
        await db.execute(f"DROP SEQUENCE {name}")
    assert final["status"] == "failed", final
    assert claims == MAX_REQUEUES + 1, "the first attempt, then one per re-queue"
    error = (await detail(client, alice, workflow["id"]))["error"]
    assert error == (
        f"its job failed {MAX_REQUEUES + 1} times before the run started: "
        "asyncpg.exceptions.RaiseError: claim refused by the test"
    ), "the job's error, not the head of its traceback (this server's file paths)"


async def test_a_run_write_whose_connection_is_cut_is_tried_again_and_the_run_succeeds(
    client: AsyncTestClient[Litestar], alice: Account, settings: Settings, db: asyncpg.Pool
) -> None:
    """One write of a running run loses its connection (its backend terminated mid-statement, as a PostgreSQL restart
    or a failover would): the write is tried once more and the run goes on, instead of failing on one fault."""
    parameters = {"discount_rate": 0.05, "simulations": 1_000_000, "volatility": 0.3, "seed": 1}
    workflow = await create(client, alice, cash_flows=LONG_FLOWS, parameters=parameters)
    with reaped() as processes:
        processes.append(worker_process(settings))
        await start_run(client, alice, workflow["id"])
        await wait_until_simulating(client, alice, workflow["id"])
        async with db.acquire() as holder, holder.transaction():
            # The run's next write waits on this row lock, so its backend is cut in the middle of that write.
            await holder.execute("SELECT 1 FROM roi_workflows WHERE id = $1 FOR UPDATE", uuid.UUID(workflow["id"]))
            waiting: list[int] = []

            async def the_run_writes() -> bool:
                waiting[:] = (
                    await db.fetchval(
                        "SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND query LIKE 'WITH touched AS%'"
                    )
                    or []
                )
                return bool(waiting)

            await wait_until(the_run_writes, "the run's next write waits on the lock")
            assert await db.fetchval("SELECT pg_terminate_backend($1)", waiting[0])
        final = await wait_for_status(client, alice, workflow["id"])
    assert final["status"] == "succeeded", final
    done = await detail(client, alice, workflow["id"])
    assert [step["status"] for step in done["steps"]] == ["succeeded"] * 5
    assert (await client.get(f"/api/workflows/{workflow['id']}/result", headers=alice.headers)).status_code == 200


class AnswerLostOnce(RunStore):
    """The run's store, whose first write commits and then loses its answer, as a connection cut right after the
    commit would."""

    lost = False

    async def commit(self, *args: Any, **kwargs: Any) -> None:
        await super().commit(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise ConnectionResetError("the connection was cut after the commit")


async def test_a_run_whose_end_committed_but_whose_answer_was_lost_still_tells_its_subscribers(
    client: AsyncTestClient[Litestar], alice: Account, settings: Settings, db: asyncpg.Pool, redis: Redis
) -> None:
    """The end is written; the retry finds the run no longer current (its own first attempt ended it). Its events
    must go out all the same, or a subscriber waits for an end it never sees until it reloads."""
    workflow = await create(client, alice, cash_flows=FLOWS, parameters={"discount_rate": 0.08})
    accepted = await start_run(client, alice, workflow["id"])
    workflow_id, namespace = uuid.UUID(workflow["id"]), settings.redis_namespace
    engine = create_engine(settings, "roi-test")
    try:
        store = AnswerLostOnce(engine, db, workflow_id, accepted["job_id"])
        owner_id = uuid.UUID(alice.id)
        notifier = WorkflowNotifier(Cache(redis, namespace), EventBus(redis, namespace), workflow_id, owner_id)
        journal = RunJournal(store, notifier)
        now = datetime.datetime.now(datetime.UTC)
        ended = notifier.workflow_status_events("succeeded", progress=1.0)
        journal.record(ended, status="succeeded", progress=1.0, started_at=now, finished_at=now)
        await journal.flush()
    finally:
        await engine.dispose()
    assert store.lost
    history = await redis.xrange(EventKeys(namespace).history(workflow_channel(workflow_id)))
    frames = [msgspec.json.decode(fields[b"frame"]) for _, fields in history]
    assert [frame["data"]["status"] for frame in frames] == ["queued", "succeeded"]
    assert (await status_of(client, alice, workflow["id"]))["status"] == "succeeded"


@contextlib.asynccontextmanager
async def reconciler_of(settings: Settings) -> AsyncIterator[Reconciler]:
    """The worker's reconciler, on the app's queue, driven pass by pass by the test."""
    services = Services.open(settings, create_engine(settings, "roi-test"))
    try:
        yield Reconciler(services)
    finally:
        await services.close()
        await services.engine.dispose()


async def test_a_job_a_worker_took_after_the_reconciler_read_it_is_not_queued_again(
    settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    """The reconciler read the job queued and in no lane; a worker took it before the reconciler acted on that read:
    putting it back would run it twice, and the second run (a no-op in PostgreSQL) would overwrite the job's record."""
    workflow_id = uuid.uuid4()
    assert await enqueue_workflow_run(app_queue, str(workflow_id), "racing-run", "normal") is not None
    async with reconciler_of(settings) as reconciler:
        read = await app_queue.job("racing-run")  # what the reconciler read: queued
        assert read is not None
        assert read.status == Status.QUEUED
        taken = await app_queue.dequeue(timeout=1)  # now in no lane
        assert taken is not None
        await reconciler._requeue_if_lost(workflow_id, "racing-run", "normal", read)
    assert await app_queue.depths() == {"high": 0, "normal": 0, "low": 0}, "not queued a second time"
    stored = await app_queue.job("racing-run")
    assert stored is not None
    assert stored.status == Status.ACTIVE


async def test_a_job_put_back_while_its_worker_held_it_popped_runs_once(
    settings: Settings, app_queue: PriorityRedisQueue
) -> None:
    """The window no read can tell from a dead worker's: popped, not yet taken. The reconciler puts the job back, a
    second worker takes it; the first worker, finishing its dequeue, must then leave it to the second."""
    workflow_id = uuid.uuid4()
    assert await enqueue_workflow_run(app_queue, str(workflow_id), "popped-run", "normal") is not None
    async with reconciler_of(settings) as reconciler:
        popped = await app_queue.pop(timeout=1)
        assert popped is not None
        read = await app_queue.job("popped-run")
        await reconciler._requeue_if_lost(workflow_id, "popped-run", "normal", read)
        assert await app_queue.depths() == {"high": 0, "normal": 1, "low": 0}, "put back: it looks lost"
        second = await app_queue.dequeue(timeout=1)
        assert second is not None
        assert second.key == "popped-run"
        assert await app_queue.take(popped) is None, "the first worker leaves the job to the one running it"
    active = await app_queue.redis.lrange(app_queue._active, 0, -1)
    assert active == [second.id.encode()], "in the active list once"
