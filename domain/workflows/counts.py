"""The lists' counts: status changes append to them (triggers), and this folds what they appended into the totals."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def fold_workflow_counts(engine: AsyncEngine) -> int:
    """Fold the appended count changes into the totals, in one statement (totals stay exact meanwhile); how many.

    Not folded, they only cost the reads of `total` a longer sum: the reconciler folds them every few seconds."""
    async with engine.begin() as conn:
        folded: int = await conn.scalar(text("SELECT roi_fold_workflow_counts()")) or 0
    return folded
