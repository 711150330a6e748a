"""Deterministic ROI metrics of one cash-flow series: NPV, IRR, ROI, payback.

Period 0 is the first cash flow and is not discounted. Every function accepts a sequence or a NumPy
array, validates it with `as_cash_flows` and works vectorised, so 100_000 flows take milliseconds.
"""

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
CashFlowsLike = Sequence[float] | npt.NDArray[Any]

POLYNOMIAL_IRR_MAX_FLOWS = 100
"""Up to this many flows (zeros trimmed from both ends), IRR comes from the polynomial's roots; the
eigenvalue solver costs O(n³), so longer series use a bracketed search instead."""

IRR_SEARCH_MAX_RATE = 1e6
"""Longer series are searched for an IRR between 1/(1 + this) - 1 (about -0.999999) and this."""

IRR_SEARCH_POINTS_PER_SIDE = 128
"""Scan points on each side of zero, each ~20 % further out in log(1 + rate) than the last; two roots
between neighbouring points cancel out and are not seen."""

ROOT_RESIDUAL_TOLERANCE = 1e-9
"""A polynomial root is kept when |NPV| at it is below this share of the sum of the discounted magnitudes."""

NEAR_REAL_TOLERANCE = 1e-6
"""Double roots come back from the eigenvalue solver as complex pairs with a tiny imaginary part."""

NEWTON_STEPS = 4
ROOT_SEARCH_MAX_STEPS = 200


@dataclass(frozen=True, slots=True)
class Metrics:
    """The `metrics` of a workflow result. A field is None where its value does not exist or would not be a
    finite float: `npv` and `discounted_payback_period` overflow float64 only for negative rates over very
    long series; `roi` is None when nothing was invested."""

    npv: float | None
    irr: float | None
    roi: float | None
    payback_period: float | None
    discounted_payback_period: float | None
    total_invested: float
    total_returned: float
    periods: int


def as_cash_flows(cash_flows: CashFlowsLike) -> FloatArray:
    """The flows as a 1-D float64 array; ValueError unless non-empty, finite and summable in float64
    (the last keeps every total finite)."""
    flows = np.asarray(cash_flows, dtype=np.float64)
    if flows.ndim != 1 or flows.size == 0:
        raise ValueError("cash flows must be a non-empty one-dimensional series")
    with np.errstate(over="ignore", invalid="ignore"):
        magnitude = np.abs(flows).sum()
    if not np.isfinite(magnitude):
        raise ValueError("cash flows must be finite numbers whose magnitudes sum to a finite float")
    return flows


def discounted_cash_flows(cash_flows: CashFlowsLike, rate: float) -> FloatArray:
    """cf[t] / (1+rate)^t. Zero flows stay zero even where the discount factor overflows (negative rates,
    long series), so such trailing zeros cannot turn the NPV into NaN."""
    flows = as_cash_flows(cash_flows)
    factors = _discount_factors(flows.size, rate)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.multiply(flows, factors, out=np.zeros_like(flows), where=flows != 0)


def npv(cash_flows: CashFlowsLike, rate: float) -> float:
    """Σ cf[t] / (1+rate)^t. Infinite or NaN only when the exact value lies beyond float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(discounted_cash_flows(cash_flows, rate).sum())


def total_invested(cash_flows: CashFlowsLike) -> float:
    """The sum of the negative flows' magnitudes."""
    flows = as_cash_flows(cash_flows)
    return float(0.0 - flows[flows < 0].sum())


def total_returned(cash_flows: CashFlowsLike) -> float:
    """The sum of the positive flows."""
    flows = as_cash_flows(cash_flows)
    return float(flows[flows > 0].sum())


def roi(cash_flows: CashFlowsLike) -> float | None:
    """(returned - invested) / invested; None when nothing was invested, as there is no base to relate to."""
    invested = total_invested(cash_flows)
    if invested == 0:
        return None
    return _finite_or_none((total_returned(cash_flows) - invested) / invested)


def payback_period(cash_flows: CashFlowsLike) -> float | None:
    """The fractional period at which the running sum first climbs back to zero after being negative,
    interpolated linearly inside that period; 0.0 if it is never negative, None if it never recovers.

    "After being negative" keeps leading zero periods (an upload that starts at period 1) or an early
    receipt from counting as paid back before anything was invested."""
    return _recovery_period(np.cumsum(as_cash_flows(cash_flows)))


def discounted_payback_period(cash_flows: CashFlowsLike, rate: float) -> float | None:
    """`payback_period` of the discounted flows."""
    with np.errstate(over="ignore", invalid="ignore"):
        running_sum = np.cumsum(discounted_cash_flows(cash_flows, rate))
    return _recovery_period(running_sum)


def irr(cash_flows: CashFlowsLike) -> float | None:
    """The rate > -1 at which the NPV is zero; None if there is none (flows of one sign or all zero).

    Among several roots it returns the one closest to zero, as numpy-financial does. Up to
    POLYNOMIAL_IRR_MAX_FLOWS flows it solves the polynomial Σ cf[t]·xᵗ (x = 1/(1+r)) like
    numpy-financial, but also keeps double roots; longer series get a scan for sign changes followed
    by a bracketed search, which never hangs but cannot see double roots."""
    flows = np.trim_zeros(as_cash_flows(cash_flows))
    if not (flows > 0).any() or not (flows < 0).any():
        return None
    if flows.size <= POLYNOMIAL_IRR_MAX_FLOWS and _fits_companion_matrix(flows):
        return _irr_from_polynomial(flows)
    return _irr_from_bracket_search(flows)


def analyze(cash_flows: CashFlowsLike, discount_rate: float) -> Metrics:
    """All the metrics of one series at one discount rate."""
    flows = as_cash_flows(cash_flows)
    return Metrics(
        npv=_finite_or_none(npv(flows, discount_rate)),
        irr=irr(flows),
        roi=roi(flows),
        payback_period=payback_period(flows),
        discounted_payback_period=discounted_payback_period(flows, discount_rate),
        total_invested=total_invested(flows),
        total_returned=total_returned(flows),
        periods=int(flows.size),
    )


def _discount_factors(periods: int, rate: float) -> FloatArray:
    if not math.isfinite(rate) or rate <= -1:
        raise ValueError("the discount rate must be a finite number above -1")
    with np.errstate(over="ignore"):
        return np.exp(-math.log1p(rate) * np.arange(periods, dtype=np.float64))


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _recovery_period(running_sum: FloatArray) -> float | None:
    negative = running_sum < 0
    if not negative.any():
        return 0.0
    first_negative = int(np.argmax(negative))
    recovered = running_sum[first_negative:] >= 0
    if not recovered.any():
        return None
    period = first_negative + int(np.argmax(recovered))
    before, after = float(running_sum[period - 1]), float(running_sum[period])
    return (period - 1) + (-before) / (after - before)


def _scaled_terms(flows: FloatArray, log_growth: float) -> FloatArray:
    """cf[t]·e^(-g·t) divided by its largest factor: the NPV's sign and roots, free of overflow."""
    periods = np.arange(flows.size, dtype=np.float64)
    anchor = flows.size - 1 if log_growth < 0 else 0
    return flows * np.exp(-log_growth * (periods - anchor))


def _irr_from_polynomial(flows: FloatArray) -> float | None:
    roots = np.roots(flows[::-1])
    near_real = (np.abs(roots.imag) <= NEAR_REAL_TOLERANCE * np.abs(roots)) & (roots.real > 0)
    log_growths = (_newton_polished(flows, 0.0 - math.log(x)) for x in roots[near_real].real)
    rates = [_rate(g) for g in log_growths if _is_root(flows, g)]
    # A root within an ulp of -1 rounds to -1, which is no rate.
    return min((rate for rate in rates if -1 < rate < math.inf), key=abs, default=None)


def _rate(log_growth: float) -> float:
    """e^g - 1; infinite where that exceeds float64."""
    with np.errstate(over="ignore"):
        return float(np.expm1(log_growth))


def _fits_companion_matrix(flows: FloatArray) -> bool:
    """np.roots divides by the last flow; beyond float64's range it would hand the eigenvalue solver infinities."""
    with np.errstate(over="ignore"):
        return bool(np.isfinite(flows / flows[-1]).all())


def _newton_polished(flows: FloatArray, log_growth: float) -> float:
    """Eigenvalue roots are only accurate to ~1e-8 near double roots. Newton steps fix that, kept only while
    they shrink the residual: where the NPV merely touches zero they would overshoot."""
    periods = np.arange(flows.size, dtype=np.float64)
    terms = _scaled_terms(flows, log_growth)
    for _ in range(NEWTON_STEPS):
        slope = -float(periods @ terms)
        step = float(terms.sum()) / slope if slope else 0.0
        if not math.isfinite(step) or step == 0:
            break
        stepped_terms = _scaled_terms(flows, log_growth - step)
        if _relative_residual(stepped_terms) >= _relative_residual(terms):
            break
        log_growth, terms = log_growth - step, stepped_terms
    return log_growth


def _is_root(flows: FloatArray, log_growth: float) -> bool:
    return _relative_residual(_scaled_terms(flows, log_growth)) <= ROOT_RESIDUAL_TOLERANCE


def _relative_residual(terms: FloatArray) -> float:
    return float(abs(terms.sum()) / np.abs(terms).sum())


@dataclass(frozen=True, slots=True)
class _DecayTable:
    """Flows laid out as rows of `width`, so that Σ cf[t]·e^(-d·t) for many decays d ≥ 0 costs one matrix
    product: with t = width·row + column, e^(-d·t) = e^(-d·width·row)·e^(-d·column), two short exponentials."""

    rows: FloatArray
    width: int

    @classmethod
    def of(cls, flows: FloatArray) -> Self:
        width = math.isqrt(flows.size - 1) + 1
        padded = np.zeros(-(-flows.size // width) * width)
        padded[: flows.size] = flows
        return cls(rows=padded.reshape(-1, width), width=width)

    def sums(self, decays: FloatArray) -> FloatArray:
        column_factors = np.exp(-np.outer(np.arange(self.width), decays))
        row_factors = np.exp(-np.outer(np.arange(self.rows.shape[0]) * self.width, decays))
        sums: FloatArray = (row_factors * (self.rows @ column_factors)).sum(axis=0)
        return sums


def _irr_from_bracket_search(flows: FloatArray) -> float | None:
    forward, backward = _DecayTable.of(flows), _DecayTable.of(flows[::-1])

    def scaled_npv(log_growth: float) -> float:
        return float(_scaled_npvs(forward, backward, np.array([log_growth]))[0])

    reach = np.geomspace(1e-9, math.log1p(IRR_SEARCH_MAX_RATE), IRR_SEARCH_POINTS_PER_SIDE)
    grid = np.concatenate([-reach[::-1], [0.0], reach])
    values = _scaled_npvs(forward, backward, grid)
    changes = np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) <= 0)
    nearest_each_side = np.concatenate([changes[changes < reach.size][-1:], changes[changes >= reach.size][:1]])
    log_growths = (
        _bracketed_root(scaled_npv, grid[i], grid[i + 1], values[i], values[i + 1]) for i in nearest_each_side
    )
    return min((_rate(g) for g in log_growths), key=abs, default=None)


def _scaled_npvs(forward: _DecayTable, backward: _DecayTable, log_growths: FloatArray) -> FloatArray:
    """NPVs at rates e^g - 1, each divided by its largest discount factor. A negative g inflates late flows,
    so there the reversed series is summed: NPV = e^(-g·(n-1))·Σ cf[n-1-s]·e^(g·s)."""
    values = np.empty_like(log_growths)
    ahead = log_growths >= 0
    values[ahead] = forward.sums(log_growths[ahead])
    values[~ahead] = backward.sums(-log_growths[~ahead])
    return values


def _bracketed_root(
    function: Callable[[float], float], low: float, high: float, at_low: float, at_high: float
) -> float:
    """Illinois regula falsi: keeps the sign-change bracket like bisection, converges superlinearly."""
    last_moved = 0
    for _ in range(ROOT_SEARCH_MAX_STEPS):
        if at_low == 0:
            return low
        if at_high == 0:
            return high
        if high - low <= 4 * sys.float_info.epsilon * max(abs(low), abs(high)):
            break
        guess = high - at_high * (high - low) / (at_high - at_low)
        if not low < guess < high:
            guess = (low + high) / 2
        at_guess = function(guess)
        if (at_guess > 0) == (at_high > 0):
            high, at_high = guess, at_guess
            at_low = at_low / 2 if last_moved == 1 else at_low
            last_moved = 1
        else:
            low, at_low = guess, at_guess
            at_high = at_high / 2 if last_moved == -1 else at_high
            last_moved = -1
    return (low + high) / 2
