"""What each agent does with a step: pure analysis code driven off the event loop, chunk by chunk.

A step reads and extends a `RunState`. CPU-bound work runs in a thread, one bounded chunk at a time, and
between chunks the step reports progress through `RunState.progress`, which is also where a cancelled run
stops (the callback raises).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domain.analysis import Metrics, SimulationSummary, analyze, simulate_npv_chunks, summarize
from domain.analysis.metrics import FloatArray

ProgressReporter = Callable[[float], Awaitable[None]]
CashFlowLoader = Callable[[], Awaitable[list[float] | None]]


class StepFailed(Exception):
    """A step cannot go on; the message says why in terms the user can act on."""


@dataclass
class RunState:
    """What a run knows so far; each step reads what earlier steps left and adds its own part."""

    raw_cash_flows: list[float] | None
    discount_rate: float
    simulations: int
    volatility: float
    seed: int | None
    progress: ProgressReporter
    load_upload: CashFlowLoader | None = None
    """Where `ingest` reads the cash flows of a workflow made from an upload."""
    cash_flows: FloatArray = field(default_factory=lambda: np.empty(0))
    metrics: Metrics | None = None
    simulation: SimulationSummary | None = None
    result: dict[str, Any] = field(default_factory=dict)
    inline_size: int = 0
    """Series up to this length are analysed on the loop rather than in a thread (the hop costs more than they do)."""


async def ingest(state: RunState) -> None:
    if state.raw_cash_flows is None and state.load_upload is not None:
        state.raw_cash_flows = await state.load_upload()
        if state.raw_cash_flows is None:
            raise StepFailed("ingest: the workflow's upload is no longer ready (it was deleted)")
    if not state.raw_cash_flows:
        raise StepFailed("ingest: the workflow has no cash flows")
    state.cash_flows = np.asarray(state.raw_cash_flows, dtype=np.float64)


async def validate(state: RunState) -> None:
    flows = state.cash_flows
    if flows.size == 0:
        raise StepFailed("validate: the series of cash flows is empty")
    if not np.all(np.isfinite(flows)):
        position = int(np.flatnonzero(~np.isfinite(flows))[0])
        raise StepFailed(f"validate: cash flow {position} is not a finite number")
    if not np.any(flows < 0):
        raise StepFailed("validate: cash flows contain no negative value (nothing was invested)")


async def analyze_flows(state: RunState) -> None:
    if state.cash_flows.size <= state.inline_size:
        state.metrics = analyze(state.cash_flows, state.discount_rate)
    else:
        state.metrics = await asyncio.to_thread(analyze, state.cash_flows, state.discount_rate)


async def simulate(state: RunState) -> None:
    """The Monte Carlo runs, each chunk in a thread; progress (and the chance to stop) after every chunk."""
    chunks = simulate_npv_chunks(state.cash_flows, state.discount_rate, state.volatility, state.simulations, state.seed)
    npvs = np.empty(state.simulations)
    done = 0
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        npvs[done : done + chunk.size] = chunk
        done += chunk.size
        await state.progress(done / state.simulations)
    state.simulation = await asyncio.to_thread(summarize, npvs)


async def report(state: RunState) -> None:
    if state.metrics is None:
        raise StepFailed("report: the analysis did not produce metrics")
    state.result = {
        "metrics": _as_dict(state.metrics),
        "simulation": _as_dict(state.simulation) if state.simulation is not None else None,
    }


def _as_dict(value: Metrics | SimulationSummary) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


STEP_EXECUTORS: dict[str, Callable[[RunState], Awaitable[None]]] = {
    "ingest": ingest,
    "validate": validate,
    "analyze": analyze_flows,
    "simulate": simulate,
    "report": report,
}
