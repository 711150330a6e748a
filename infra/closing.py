"""Bounded shutdown: a process that stops must not wait for ever on a client whose server does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

logger = logging.getLogger("roi.services")

CLOSE_TIMEOUT_S = 5.0


async def close_within(what: str, closing: Awaitable[None]) -> bool:
    """Whether `closing` finished within CLOSE_TIMEOUT_S; if not, it is abandoned and the shutdown goes on."""
    try:
        await asyncio.wait_for(closing, CLOSE_TIMEOUT_S)
    except TimeoutError:
        logger.error("closing %s took more than %g s; going on without it", what, CLOSE_TIMEOUT_S)
        return False
    return True


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Stop a background task and wait until it has: a statement it was running gives its connection back first."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
