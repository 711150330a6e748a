"""Deterministic metrics: hand-worked cases, edge cases, and numpy-financial as the reference."""

import dataclasses
import math

import numpy as np
import numpy_financial as npf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.analysis import (
    analyze,
    as_cash_flows,
    discounted_payback_period,
    irr,
    npv,
    payback_period,
    roi,
    total_invested,
    total_returned,
)

LONG = 100_000

amounts = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
money = st.integers(min_value=-(10**8), max_value=10**8).map(lambda cents: cents / 100)
series = st.lists(amounts, min_size=1, max_size=40)
mixed_series = st.lists(money, min_size=2, max_size=25).filter(lambda flows: min(flows) < 0 < max(flows))
rates = st.floats(min_value=-0.9, max_value=10.0)


def discounted_magnitude(flows: list[float] | np.ndarray, rate: float) -> float:
    """The scale an NPV is judged against: Σ |cf[t]| / (1+rate)^t."""
    return npv(np.abs(np.asarray(flows, dtype=np.float64)), rate)


def relative_residual(flows: list[float] | np.ndarray, rate: float) -> float:
    return abs(npv(flows, rate)) / discounted_magnitude(flows, rate)


def rate_rounding(flows: list[float] | np.ndarray, rate: float) -> float:
    """The residual that rounding the rate alone can cause: (1+r)^t amplifies it t/(1+r)-fold."""
    return len(flows) * np.finfo(float).eps * max(1.0, abs(rate)) / (1 + rate)


def reference_irr(flows: list[float]) -> float:
    """numpy-financial's IRR, NaN where it finds none or its eigenvalue solver gives up."""
    with np.errstate(all="ignore"):
        try:
            return float(npf.irr(flows))
        except np.linalg.LinAlgError:
            return math.nan


def sign_changes(flows: list[float]) -> int:
    signs = np.sign([flow for flow in flows if flow != 0])
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def annuity_with_irr(rate: float, periods: int) -> np.ndarray:
    """One outlay then `periods - 1` payments of 1, priced so that `rate` is the IRR."""
    flows = np.ones(periods)
    flows[0] = -np.sum((1 + rate) ** -np.arange(1.0, periods))
    return flows


@settings(max_examples=300, deadline=None)
@given(series, rates)
def test_npv_matches_numpy_financial(flows: list[float], rate: float) -> None:
    expected = npf.npv(rate, flows)
    assert npv(flows, rate) == pytest.approx(expected, rel=1e-9, abs=1e-12 * discounted_magnitude(flows, rate))


@settings(max_examples=500, deadline=None)
@given(mixed_series)
def test_irr_is_a_root_and_as_close_to_zero_as_numpy_financials(flows: list[float]) -> None:
    ours = irr(flows)
    reference = reference_irr(flows)
    if ours is not None:
        assert ours > -1
        assert relative_residual(flows, ours) <= 1e-8 + rate_rounding(flows, ours)
    if math.isfinite(reference) and reference > -1 and relative_residual(flows, reference) <= 1e-10:
        assert ours is not None
        assert abs(ours) <= abs(reference) + 1e-9 * (1 + abs(reference))
        if sign_changes(flows) == 1:
            assert ours == pytest.approx(reference, rel=1e-7, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(series, rates)
def test_analyze_never_returns_nan_or_infinity(flows: list[float], rate: float) -> None:
    metrics = analyze(flows, rate)
    for field in dataclasses.fields(metrics):
        value = getattr(metrics, field.name)
        assert value is None or math.isfinite(value), field.name
    assert metrics.irr is None or metrics.irr > -1
    assert metrics.total_invested >= 0
    assert metrics.total_returned >= 0
    assert metrics.periods == len(flows)


def test_hand_worked_series() -> None:
    flows = [-1000, 300, 400, 500]
    metrics = analyze(flows, 0.08)
    # -1000 + 277.778 + 342.936 + 396.916
    assert metrics.npv == pytest.approx(17.629426, abs=1e-6)
    assert metrics.irr == pytest.approx(0.0889634, abs=1e-7)
    assert metrics.total_invested == 1000
    assert metrics.total_returned == 1200
    assert metrics.roi == pytest.approx(0.2)
    # Running sums -1000, -700, -300, +200: 300 of period 3's 500 are needed, so 2 + 0.6.
    assert metrics.payback_period == pytest.approx(2.6)
    # Discounted running sums -1000, -722.222, -379.287, +17.629: 2 + 379.287 / 396.916.
    assert metrics.discounted_payback_period == pytest.approx(2.955584, abs=1e-6)
    assert metrics.periods == 4


def test_npv_at_rate_zero_is_the_plain_sum() -> None:
    assert npv([-1000, 300, 400, 500], 0.0) == 200


@pytest.mark.parametrize(
    ("flows", "expected"),
    [
        ([-100, 50, 50], 2.0),
        ([-100, 100, -50, 100], 1.0),
        ([0, 0, -1000, 300, 400, 500], 4.6),
        ([100, -200, 150], 1 + 100 / 150),
        ([-100, 10, 10], None),
        ([100, 50], 0.0),
        ([0, 0, 0], 0.0),
        ([-5], None),
    ],
    ids=[
        "recovers exactly at a period end",
        "first recovery counts",
        "leading zero periods",
        "early receipt is no payback",
        "never recovers",
        "never negative",
        "all zeros",
        "single outlay",
    ],
)
def test_payback_period(flows: list[float], expected: float | None) -> None:
    assert payback_period(flows) == pytest.approx(expected)


def test_discounted_payback_is_later_than_plain_payback() -> None:
    flows = [-100, 60, 60]
    # Discounted at 10 %: -100, 54.545, 49.587; 1 + 45.455 / 49.587.
    assert discounted_payback_period(flows, 0.1) == pytest.approx(1 + (100 - 60 / 1.1) / (60 / 1.21))
    assert payback_period(flows) == pytest.approx(1 + 40 / 60)
    assert discounted_payback_period([-100, 60, 60], 0.5) is None


def test_all_negative_flows() -> None:
    metrics = analyze([-100, -50, -25], 0.1)
    assert metrics.irr is None
    assert metrics.roi == -1.0
    assert metrics.payback_period is None
    assert metrics.total_returned == 0.0


def test_all_positive_flows_have_no_roi_and_pay_back_at_once() -> None:
    metrics = analyze([100, 50], 0.1)
    assert metrics.irr is None
    assert metrics.roi is None
    assert metrics.payback_period == 0.0
    assert metrics.total_invested == 0.0
    assert math.copysign(1, metrics.total_invested) == 1, "-0.0 would serialise as -0.0"


def test_all_zero_flows() -> None:
    metrics = analyze([0.0] * 5, 0.1)
    assert (metrics.npv, metrics.irr, metrics.roi) == (0.0, None, None)
    assert (metrics.total_invested, metrics.total_returned) == (0.0, 0.0)


def test_one_flow() -> None:
    metrics = analyze([-250.0], 0.1)
    assert metrics.npv == -250.0
    assert metrics.irr is None
    assert metrics.periods == 1


def test_several_sign_changes_give_the_root_closest_to_zero() -> None:
    # -100 + 230x - 132x² = 0 at x = 1/1.1 and x = 1/1.2: IRRs of 10 % and 20 %.
    assert irr([-100, 230, -132]) == pytest.approx(0.1, abs=1e-12)
    assert npf.irr([-100, 230, -132]) == pytest.approx(0.1, abs=1e-12)


def test_double_roots_are_found() -> None:
    # -(1 - x)² and -(10 - 11x)² touch zero at x = 1 and x = 1/1.1 without crossing it; the eigenvalue
    # solver returns the second as a complex pair, so numpy-financial misses it.
    assert irr([-1, 2, -1]) == pytest.approx(0.0, abs=1e-7)
    assert irr([-100, 220, -121]) == pytest.approx(0.1, abs=1e-7)
    assert math.isnan(reference_irr([-100, 220, -121]))


def test_sign_changes_without_a_root() -> None:
    # -100 + 50x - 100x² is negative for every x.
    assert irr([-100, 50, -100]) is None


def test_irr_ignores_leading_and_trailing_zeros() -> None:
    assert irr([0, 0, -100, 0, 121, 0, 0]) == pytest.approx(irr([-100, 0, 121]), abs=1e-12)
    assert irr([-100, 0, 121]) == pytest.approx(0.1, abs=1e-12)


def test_irr_of_a_root_beyond_float_precision_is_none() -> None:
    # The root, -1 + 1e-306, rounds to -1, which is no rate.
    assert irr([-1e6, 1e-300]) is None


@pytest.mark.parametrize("rate", [0.001, 0.05, -0.00001])
def test_irr_of_a_long_annuity(rate: float) -> None:
    assert irr(annuity_with_irr(rate, LONG)) == pytest.approx(rate, rel=1e-9)


def test_irr_of_a_long_series_with_two_roots_is_the_one_closest_to_zero() -> None:
    # Multiplying the two-root polynomial by 1 + x + ... + x^m (positive for x > 0) keeps exactly its roots.
    flows = np.convolve([-100, 230, -132], np.ones(LONG - 2))
    assert flows.size == LONG
    assert irr(flows) == pytest.approx(0.1, rel=1e-9)


def test_irr_of_a_long_series_without_a_root() -> None:
    flows = -np.ones(LONG)
    flows[5] = 1e-3
    assert irr(flows) is None


def test_long_series_metrics() -> None:
    flows = np.ones(LONG)
    flows[0] = -50_000
    assert npv(flows, 0.0001) == pytest.approx(npf.npv(0.0001, flows), rel=1e-10)
    assert payback_period(flows) == 50_000.0
    assert total_returned(flows) == LONG - 1
    assert total_invested(flows) == 50_000
    assert roi(flows) == pytest.approx((LONG - 1 - 50_000) / 50_000)


def test_npv_that_overflows_float_is_none_in_the_metrics() -> None:
    flows = np.ones(LONG)
    flows[0] = -1
    metrics = analyze(flows, -0.5)
    assert metrics.npv is None
    assert metrics.irr == pytest.approx(1.0, rel=1e-12)
    assert metrics.discounted_payback_period == pytest.approx(0.5)


def test_trailing_zeros_where_discount_factors_overflow_do_not_poison_the_npv() -> None:
    flows = np.zeros(LONG)
    flows[0] = -1
    assert npv(flows, -0.5) == -1.0
    assert discounted_payback_period(flows, -0.5) is None


@pytest.mark.parametrize(
    "flows",
    [[], [1.0, math.nan], [math.inf, -1.0], [[1.0, 2.0]], [1e308, 1e308]],
    ids=["empty", "nan", "infinite", "two-dimensional", "sum overflows"],
)
def test_invalid_cash_flows_are_rejected(flows: list[float]) -> None:
    with pytest.raises(ValueError, match="cash flows"):
        as_cash_flows(flows)


@pytest.mark.parametrize("rate", [-1.0, -2.0, math.nan, math.inf])
def test_invalid_discount_rates_are_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="discount rate"):
        npv([-1, 2], rate)
