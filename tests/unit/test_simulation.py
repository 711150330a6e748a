"""Monte Carlo NPV: reproducibility, chunking, and statistics checked against the exact distribution.

Every run's NPV is npv + v·Σ z[t]·cf[t]·d[t], a normal with standard deviation v·‖cf·d‖, so the
sample statistics have known targets and standard errors.
"""

import math

import numpy as np
import pytest

from domain.analysis import (
    chunk_runs_for,
    discounted_cash_flows,
    npv,
    run_simulation,
    simulate_npv_chunks,
    summarize,
)
from domain.analysis.simulation import NORMALS_PER_CHUNK

FLOWS = [-1000.0, 300.0, 400.0, 500.0]
RATE = 0.08
P95_Z = 1.6448536269514722


def all_npvs(*args: object, **kwargs: object) -> np.ndarray:
    return np.concatenate(list(simulate_npv_chunks(*args, **kwargs)))  # type: ignore[arg-type]


def exact_npv_deviation(flows: list[float], rate: float, volatility: float) -> float:
    return volatility * float(np.linalg.norm(discounted_cash_flows(flows, rate)))


def test_same_seed_same_summary() -> None:
    assert run_simulation(FLOWS, RATE, 0.2, 10_000, seed=42) == run_simulation(FLOWS, RATE, 0.2, 10_000, seed=42)


def test_different_seeds_differ() -> None:
    assert not np.array_equal(all_npvs(FLOWS, RATE, 0.2, 1_000, seed=1), all_npvs(FLOWS, RATE, 0.2, 1_000, seed=2))


def test_without_a_seed_runs_differ() -> None:
    assert not np.array_equal(all_npvs(FLOWS, RATE, 0.2, 1_000), all_npvs(FLOWS, RATE, 0.2, 1_000))


def test_npvs_do_not_depend_on_the_chunk_size() -> None:
    flows = np.linspace(-500, 400, 1_000)
    block = chunk_runs_for(flows.size)
    runs = 2 * block + block // 3
    reference = all_npvs(flows, RATE, 0.3, runs, seed=7)
    for chunk_runs in (1, block + 1, runs):
        assert np.array_equal(all_npvs(flows, RATE, 0.3, runs, seed=7, chunk_runs=chunk_runs), reference)


def test_chunk_count_and_sizes() -> None:
    flows = np.linspace(-500, 400, 1_000)
    block = chunk_runs_for(flows.size)
    runs = 2 * block + block // 3
    default_sizes = [chunk.size for chunk in simulate_npv_chunks(flows, RATE, 0.3, runs, seed=7)]
    assert default_sizes == [block, block, block // 3]
    doubled_sizes = [chunk.size for chunk in simulate_npv_chunks(flows, RATE, 0.3, runs, seed=7, chunk_runs=block + 1)]
    assert doubled_sizes == [2 * block, block // 3]


def test_each_block_draws_fresh_numbers() -> None:
    flows = np.linspace(-500, 400, 1_000)
    first, second = simulate_npv_chunks(flows, RATE, 0.3, 2 * chunk_runs_for(flows.size), seed=7)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("periods", [1, 4, 100, 1_000, 100_000, 3_000_000])
def test_chunks_stay_within_the_random_number_budget(periods: int) -> None:
    runs = chunk_runs_for(periods)
    assert runs >= 1
    assert runs * periods <= max(NORMALS_PER_CHUNK, periods)


def test_zero_volatility_reproduces_the_deterministic_npv() -> None:
    npvs = all_npvs(FLOWS, RATE, 0.0, 5_000, seed=3)
    expected = npv(FLOWS, RATE)
    assert np.all(npvs == expected)
    summary = summarize(npvs)
    assert summary.npv_p5 == summary.npv_p50 == summary.npv_p95 == expected
    assert summary.npv_mean == pytest.approx(expected, rel=1e-12)
    assert summary.probability_npv_positive == 1.0


def test_statistics_match_the_exact_normal_distribution() -> None:
    runs = 200_000
    summary = run_simulation(FLOWS, RATE, 0.1, runs, seed=11)
    center = npv(FLOWS, RATE)
    deviation = exact_npv_deviation(FLOWS, RATE, 0.1)
    assert summary.runs == runs
    assert abs(summary.npv_mean - center) <= 4 * deviation / math.sqrt(runs)
    # Quantile standard errors here are about 0.005 (tails) and 0.003 (median) deviations.
    assert summary.npv_p50 == pytest.approx(center, abs=0.02 * deviation)
    assert summary.npv_p5 == pytest.approx(center - P95_Z * deviation, abs=0.03 * deviation)
    assert summary.npv_p95 == pytest.approx(center + P95_Z * deviation, abs=0.03 * deviation)
    positive = 0.5 * (1 + math.erf(center / deviation / math.sqrt(2)))
    assert summary.probability_npv_positive == pytest.approx(positive, abs=4 * math.sqrt(positive / runs))


def test_spread_scales_with_volatility() -> None:
    npvs = all_npvs(FLOWS, RATE, 0.5, 200_000, seed=5)
    assert np.std(npvs) == pytest.approx(exact_npv_deviation(FLOWS, RATE, 0.5), rel=0.01)


def test_summary_of_known_npvs() -> None:
    summary = summarize(np.arange(-50.0, 51.0))
    assert summary.runs == 101
    assert (summary.npv_p5, summary.npv_p50, summary.npv_p95) == (-45.0, 0.0, 45.0)
    assert summary.npv_mean == 0.0
    assert summary.probability_npv_positive == pytest.approx(50 / 101)


@pytest.mark.parametrize("npvs", [np.array([]), np.array([1.0, math.nan]), np.array([math.inf])])
def test_summary_needs_finite_npvs(npvs: np.ndarray) -> None:
    with pytest.raises(ValueError, match="finite NPVs"):
        summarize(npvs)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"volatility": -0.1}, "volatility"),
        ({"volatility": math.nan}, "volatility"),
        ({"runs": 0}, "runs"),
        ({"chunk_runs": 0}, "chunk_runs"),
        ({"rate": -1.0}, "discount rate"),
        ({"cash_flows": [1.0] * 100_000, "rate": -0.5}, "overflows"),
    ],
)
def test_invalid_arguments_fail_before_the_first_chunk(arguments: dict[str, object], message: str) -> None:
    call = {"cash_flows": FLOWS, "rate": RATE, "volatility": 0.2, "runs": 100, "seed": 1} | arguments
    with pytest.raises(ValueError, match=message):
        simulate_npv_chunks(**call)  # type: ignore[arg-type]
