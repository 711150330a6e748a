"""Pure ROI analysis: deterministic metrics and Monte Carlo NPV risk. No I/O, no framework."""

from domain.analysis.metrics import (
    Metrics,
    analyze,
    as_cash_flows,
    discounted_cash_flows,
    discounted_payback_period,
    irr,
    npv,
    payback_period,
    roi,
    total_invested,
    total_returned,
)
from domain.analysis.simulation import (
    SimulationSummary,
    chunk_runs_for,
    run_simulation,
    simulate_npv_chunks,
    summarize,
)

__all__ = [
    "Metrics",
    "SimulationSummary",
    "analyze",
    "as_cash_flows",
    "chunk_runs_for",
    "discounted_cash_flows",
    "discounted_payback_period",
    "irr",
    "npv",
    "payback_period",
    "roi",
    "run_simulation",
    "simulate_npv_chunks",
    "summarize",
    "total_invested",
    "total_returned",
]
