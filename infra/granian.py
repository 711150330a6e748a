"""Granian hooks: run our own shutdown work (closing WebSockets with 1001) before Granian drops the connections.

Granian 2.8 reacts to a worker's SIGTERM by stopping its runtime at once: open WebSockets are cut without a close
frame, and by the time the ASGI lifespan shutdown runs no frame can be sent any more (seen running; its ASGI layer has
no hook for it). So, when the app runs in a Granian worker, its SIGTERM/SIGINT handler is wrapped: our `before`
coroutine runs first (bounded by the caller), then Granian's own handler. Granian's handler is found as the closure
`granian._signals.set_loop_signals.<locals>.signal_handler`; if it is not there (another server, another Granian),
nothing is wrapped and the lifespan shutdown does the work instead.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import types
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("roi.granian")

GRANIAN_MODULE = "granian._signals"
GRANIAN_HANDLER = "set_loop_signals.<locals>.signal_handler"
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _granian_signal_handler() -> Callable[[int, Any], None] | None:
    if GRANIAN_MODULE not in sys.modules:
        return None
    for candidate in gc.get_objects():
        if (
            isinstance(candidate, types.FunctionType)
            and candidate.__module__ == GRANIAN_MODULE
            and candidate.__qualname__ == GRANIAN_HANDLER
        ):
            return candidate
    return None


def run_before_granian_stops(before: Callable[[], Awaitable[None]]) -> bool:
    """Run `before` on SIGTERM/SIGINT ahead of Granian's worker shutdown; False when not under a Granian worker."""
    granian_handler = _granian_signal_handler()
    if granian_handler is None:
        return False
    loop = asyncio.get_running_loop()
    running: list[asyncio.Task[None]] = []

    def stop_granian(signum: int) -> None:
        granian_handler(signum, None)

    async def then_stop(signum: int) -> None:
        try:
            await before()
        except Exception:
            logger.exception("the work to do before Granian stops failed")
        finally:
            stop_granian(signum)

    def on_signal(signum: int) -> None:
        if running:  # a second signal: stop now
            stop_granian(signum)
            return
        running.append(loop.create_task(then_stop(signum)))

    for signum in SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    return True
