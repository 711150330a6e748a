"""A shutdown is bounded even by a closing or a background task that does not stop when cancelled (redis-py can lose
a task's cancellation: a loop that only awaits Redis then runs on, and waiting for it hung a shutdown for minutes)."""

from __future__ import annotations

import asyncio
import time

from infra.closing import cancel_and_wait, close_within, raise_if_cancelled


async def _deaf(until: asyncio.Event) -> None:
    """Like a loop whose Redis call swallowed the cancellation: it goes on whatever it is told, until `until` is set
    (the test's own way to end it)."""
    while not until.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]


async def _bounded(awaitable: asyncio.Future[None] | asyncio.Task[None], within_s: float) -> float:
    """How long `awaitable` took; fails instead of hanging the test run when it takes longer than `within_s`."""
    started = time.monotonic()
    done, _ = await asyncio.wait({awaitable}, timeout=within_s)
    assert awaitable in done, f"still waiting after {within_s} s"
    return time.monotonic() - started


async def test_a_closing_that_ignores_its_cancellation_is_left_behind_at_its_bound() -> None:
    until = asyncio.Event()
    deaf = asyncio.ensure_future(_deaf(until))
    closing = asyncio.ensure_future(close_within("a deaf client", deaf, timeout_s=0.2))
    await _bounded(closing, 5.0)
    assert closing.result() is False
    assert not deaf.done(), "abandoned, not waited for"
    until.set()
    await deaf


async def test_a_closing_that_finishes_in_time_is_reported_done() -> None:
    assert await close_within("a quick client", asyncio.sleep(0.01), timeout_s=1.0) is True


async def test_stopping_a_background_task_that_ignores_its_cancellation_ends_after_the_grace() -> None:
    until = asyncio.Event()
    deaf = asyncio.get_running_loop().create_task(_deaf(until))
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(cancel_and_wait(deaf, grace_s=0.2))
    await _bounded(stopping, 5.0)
    assert not deaf.done()
    until.set()
    await deaf


async def test_a_loop_that_checks_stops_even_when_an_await_swallowed_its_cancellation() -> None:
    swallowed = asyncio.Event()

    async def loop_once_swallowing() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:  # what redis-py does now and then: the call returns normally
                swallowed.set()
            raise_if_cancelled()

    task = asyncio.get_running_loop().create_task(loop_once_swallowing())
    await asyncio.sleep(0)
    task.cancel()
    await _bounded(task, 5.0)
    assert swallowed.is_set()
    assert task.cancelled()
