"""Bounded shutdown: a process that stops must not wait for ever on a client whose server does not answer, nor on a
background task that did not stop when cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

logger = logging.getLogger("roi.services")

CLOSE_TIMEOUT_S = 5.0
CANCEL_GRACE_S = 1.0
"""How long a closing cut at its bound, or a cancelled task, is given to unwind before it is left behind."""


def raise_if_cancelled() -> None:
    """Raise CancelledError when this task was asked to stop, for a loop to call after each await.

    redis-py 8.2's asyncio client can return normally from a command or pipeline whose task was cancelled meanwhile
    (seen: 143 of 3,000 cancels of one LLEN, 204 of 3,000 of a pipeline): the cancellation is lost, and a loop that
    only awaits Redis, or a run that only writes its progress, then goes on for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def close_within(what: str, closing: Awaitable[None], timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """Whether `closing` finished within `timeout_s`; if not, it is cancelled, given CANCEL_GRACE_S to unwind, then
    abandoned, and the shutdown goes on (`asyncio.wait_for` would wait for the cancelled closing however long it
    takes to stop, or for ever if it swallows the cancellation)."""
    task = asyncio.ensure_future(closing)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        task.result()
        return True
    task.cancel()
    await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    logger.error("closing %s took more than %g s; going on without it", what, timeout_s)
    return False


async def cancel_and_wait(task: asyncio.Task[None] | None, grace_s: float = CANCEL_GRACE_S) -> None:
    """Stop a background task and wait until it has: a statement it was running gives its connection back first.
    A task still running `grace_s` after its cancellation (it lost or ignored it) is left behind, logged."""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait({task}, timeout=grace_s)
    if not task.done():
        logger.error("background task %s did not stop within %g s of its cancellation", task.get_name(), grace_s)
        return
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task %s failed", task.get_name(), exc_info=task.exception())
