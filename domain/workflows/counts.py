"""The lists' counts: status changes append to them (triggers), and this folds what they appended into the totals."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.closing import cancel_and_wait, raise_if_cancelled

logger = logging.getLogger("roi.counts")

FOLD = "SELECT roi_fold_workflow_counts()"
FOLD_EVERY_S = 1.0
"""How often each API process folds: a list's `total` sums the changes not folded yet, so their number, not the
number of workflows, is what a page's count costs; folded every second, a burst of runs leaves a few hundred."""
VACUUM = "VACUUM (SKIP_LOCKED) workflow_count_changes"
VACUUM_AFTER_ROWS = 2_000
"""Folded rows are dead until vacuumed, and the sum still walks their index entries: 21,515 of them made a page's
total cost 1.0 ms of PostgreSQL instead of 0.16 ms. Autovacuum wakes once a minute at best; this process vacuums the
(small) table itself once it has folded this many."""


async def fold_workflow_counts(engine: AsyncEngine) -> int:
    """Fold the appended count changes into the totals, in one statement (totals stay exact meanwhile); how many."""
    async with engine.begin() as conn:
        folded: int = await conn.scalar(text(FOLD)) or 0
    return folded


class CountFolder:
    """Folds every `fold_every_s` in the background of an API process, so that the totals stay cheap to read with no
    worker running as well. Concurrent folds (other processes, the workers' reconciler) queue on the totals' rows in
    one order: they cannot deadlock, and what one folds the others no longer see."""

    def __init__(
        self, pool: asyncpg.Pool, *, fold_every_s: float = FOLD_EVERY_S, vacuum_after_rows: int = VACUUM_AFTER_ROWS
    ) -> None:
        self.pool = pool
        self.fold_every_s = fold_every_s
        self.vacuum_after_rows = vacuum_after_rows
        self._task: asyncio.Task[None] | None = None
        self._unvacuumed = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._fold_forever())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _fold_forever(self) -> None:
        while True:
            await asyncio.sleep(self.fold_every_s)
            try:
                self._unvacuumed += await self.pool.fetchval(FOLD) or 0
                if self._unvacuumed >= self.vacuum_after_rows:
                    await self.pool.execute(VACUUM)
                    self._unvacuumed = 0
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.debug("counts not folded: %s", error)
            except Exception:
                logger.exception("counts not folded")
            raise_if_cancelled()
