"""Monte Carlo NPV risk: each run multiplies every cash flow by an independent 1 + volatility·N(0,1) factor.

The NPV of a run is Σ cf[t]·d[t]·(1 + v·z[t]) = npv + v·(z @ (cf·d)), so a chunk of runs costs one draw
of standard normals and one matrix-vector product; the multiplied flows are never materialised.

Work is cut into chunks the caller pulls one by one (each in a thread, reporting progress and checking
for cancellation in between). Random numbers come in fixed blocks of `chunk_runs_for(len(cash_flows))`
runs, block i drawn from the i-th child of `SeedSequence(seed)`, and a chunk is a whole number of blocks.
So with a seed the NPVs, and the summary, are bit-for-bit the same for any `chunk_runs`, given the same
NumPy and BLAS builds.
"""

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from domain.analysis.metrics import CashFlowsLike, FloatArray, discounted_cash_flows

NORMALS_PER_CHUNK = 2**21
"""Random numbers per block (16 MiB of float64, ~25 ms to draw): small enough for prompt cancellation and
bounded memory whatever the series length, large enough that per-block overhead is negligible."""


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """The `simulation` of a workflow result; percentiles interpolate linearly between runs."""

    runs: int
    npv_mean: float
    npv_p5: float
    npv_p50: float
    npv_p95: float
    probability_npv_positive: float


def chunk_runs_for(periods: int) -> int:
    """Runs per random block (and per chunk by default) for a series of `periods` cash flows."""
    return max(1, NORMALS_PER_CHUNK // periods)


def simulate_npv_chunks(
    cash_flows: CashFlowsLike,
    rate: float,
    volatility: float,
    runs: int,
    seed: int | None = None,
    chunk_runs: int | None = None,
) -> Iterator[FloatArray]:
    """The simulated NPVs, one array per chunk, `runs` values in all; `seed` None draws fresh entropy.

    `chunk_runs` is rounded up to whole random blocks and never changes the values. Validation happens
    here, before the first chunk: ValueError for bad arguments, or when the discounted flows overflow
    float64 (a negative rate over a very long series), where no NPV could be represented."""
    discounted = discounted_cash_flows(cash_flows, rate)
    with np.errstate(over="ignore", invalid="ignore"):
        deterministic_npv = float(discounted.sum())
    if not math.isfinite(deterministic_npv):
        raise ValueError("the NPV overflows float64 at this discount rate over this many periods")
    if not math.isfinite(volatility) or volatility < 0:
        raise ValueError("volatility must be a finite number >= 0")
    if runs < 1:
        raise ValueError("runs must be at least 1")
    if chunk_runs is not None and chunk_runs < 1:
        raise ValueError("chunk_runs must be at least 1")
    block_runs = chunk_runs_for(discounted.size)
    blocks_per_chunk = -(-(chunk_runs or block_runs) // block_runs)
    chunk_count = -(-runs // (block_runs * blocks_per_chunk))
    blocks = _block_npvs(discounted, deterministic_npv, volatility, runs, seed, block_runs)
    return (np.concatenate(list(itertools.islice(blocks, blocks_per_chunk))) for _ in range(chunk_count))


def summarize(npvs: FloatArray) -> SimulationSummary:
    """Mean, 5th/50th/95th percentiles and share of positive NPVs of all the runs' NPVs."""
    if npvs.size == 0 or not np.isfinite(npvs).all():
        raise ValueError("a summary needs at least one run and finite NPVs")
    p5, p50, p95 = np.percentile(npvs, [5, 50, 95])
    return SimulationSummary(
        runs=int(npvs.size),
        npv_mean=float(npvs.mean()),
        npv_p5=float(p5),
        npv_p50=float(p50),
        npv_p95=float(p95),
        probability_npv_positive=float(np.count_nonzero(npvs > 0) / npvs.size),
    )


def run_simulation(
    cash_flows: CashFlowsLike, rate: float, volatility: float, runs: int, seed: int | None = None
) -> SimulationSummary:
    """The whole simulation in one call, for callers that need neither progress nor cancellation."""
    return summarize(np.concatenate(list(simulate_npv_chunks(cash_flows, rate, volatility, runs, seed))))


def _block_npvs(
    discounted: FloatArray, deterministic_npv: float, volatility: float, runs: int, seed: int | None, block_runs: int
) -> Iterator[FloatArray]:
    seeds = np.random.SeedSequence(seed)
    for start in range(0, runs, block_runs):
        generator = np.random.default_rng(seeds.spawn(1)[0])
        normals = generator.standard_normal((min(block_runs, runs - start), discounted.size))
        yield deterministic_npv + volatility * (normals @ discounted)
