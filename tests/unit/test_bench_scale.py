"""The scale scenario's arithmetic: who owns the seeded workflows, row names, the 1M÷11k ratios and their verdicts."""

from __future__ import annotations

import math

import click
import pytest

from bench.report import ScenarioResult, judge, scale_ratios
from bench.scale import check_alike
from bench.scale_seed import Shape
from bench.scenarios import GOALS, SCALE_READS, SCALE_WRITES, scale_row, size_label
from bench.service import BenchFailed


def result(name: str, p50_ms: float, p95_ms: float, p95_vs_floor: float = math.nan, errors: int = 0) -> ScenarioResult:
    return ScenarioResult(
        name=name,
        service="uncached",
        request="GET /",
        requests_per_s=100.0,
        requests_per_s_by_round=[100.0],
        p50_ms=p50_ms,
        p95_ms=p95_ms,
        p99_ms=p95_ms,
        requests=100,
        errors=errors,
        requests_per_s_vs_floor=1.0,
        p95_vs_floor=p95_vs_floor,
        client_cpu_cores=0.0,
        server_cpu_cores=0.0,
        server_cpu_us_per_request=0.0,
    )


@pytest.mark.parametrize(
    ("workflows", "big_user", "users", "per_user"),
    [(1_000_000, 100_000, 1_000, 900), (11_000, 10_100, 1, 900), (20_000, 10_100, 11, 900)],
)
def test_shape_gives_a_tenth_but_at_least_a_full_page_past_offset_10000_to_one_user_and_the_rest_in_equal_users(
    workflows: int, big_user: int, users: int, per_user: int
) -> None:
    shape = Shape.of(workflows)
    assert (shape.big_user, shape.users, shape.per_user) == (big_user, users, per_user)
    assert shape.big_user + shape.users * shape.per_user == workflows


@pytest.mark.parametrize("workflows", [999, 1_500, 0, 1_000, 10_000, 12_000])
def test_shape_refuses_what_does_not_answer_every_read_in_full_or_split_into_equal_users(workflows: int) -> None:
    with pytest.raises(click.BadParameter):
        Shape.of(workflows)


def test_rows_are_named_by_size() -> None:
    assert [size_label(n) for n in (1_000, 20_000, 1_000_000, 2_000_000)] == ["1k", "20k", "1m", "2m"]
    assert scale_row("scale_detail", 1_000_000) == "scale_detail_1m"


def test_ratios_pair_each_row_with_its_twin_and_skip_a_row_measured_once() -> None:
    results = [
        result("scale_detail_1k", 2.0, 4.0),
        result("scale_detail_1m", 2.5, 5.0),
        result("scale_status_1k", 1.0, 2.0),
    ]
    [ratio] = scale_ratios(results, ("scale_detail", "scale_status"), "1k", "1m")
    assert (ratio.scenario, ratio.small, ratio.large) == ("scale_detail", "scale_detail_1k", "scale_detail_1m")
    assert (ratio.small_p50_ms, ratio.large_p50_ms, ratio.small_p95_ms, ratio.large_p95_ms) == (2.0, 2.5, 4.0, 5.0)
    assert ratio.p95_ratio == pytest.approx(1.25)


def test_every_scale_row_has_a_goal_against_its_small_twin() -> None:
    goals = {goal.scenario: goal for goal in GOALS if goal.issue == 13}
    assert set(goals) == {scale_row(name, 1_000_000) for name in (*SCALE_READS, *SCALE_WRITES)}
    assert all(goal.floor == goal.scenario.removesuffix("_1m") + "_11k" for goal in goals.values())
    assert goals["scale_first_page_1m"].describe() == "#13 p95 <= 20 ms, p95 <= 1.2x scale_first_page_11k's"


@pytest.mark.parametrize(
    ("p95_ms", "p95_vs_floor", "errors", "passed"),
    [
        (19.0, 1.2, 0, True),  # limits are inclusive
        (19.0, 1.21, 0, False),  # slower than 1.2x its small twin
        (21.0, 1.0, 0, False),  # over 20 ms, however fast the small twin
        (19.0, 1.0, 1, False),  # an error fails a verdict
    ],
)
def test_first_page_at_1m_is_judged_by_its_ratio_and_its_p95(
    p95_ms: float, p95_vs_floor: float, errors: int, passed: bool
) -> None:
    [verdict] = judge(GOALS, [result("scale_first_page_1m", 5.0, p95_ms, p95_vs_floor, errors)])
    assert verdict.passed is passed


def test_a_row_without_a_ms_limit_is_judged_by_its_ratio_alone() -> None:
    [verdict] = judge(GOALS, [result("scale_offset_10000_1m", 50.0, 400.0, 1.1)])
    assert verdict.passed


FULL = {"scale_first_page": (50, True), "scale_status_page": (50, True)}


def test_list_reads_that_answer_full_pages_with_a_next_page_at_both_sizes_compare() -> None:
    check_alike({"11k": FULL, "1m": FULL}, {"11k": {}, "1m": {}})


@pytest.mark.parametrize(
    "small",
    [
        {**FULL, "scale_status_page": (15, False)},  # a short list's status page
        {**FULL, "scale_status_page": (0, False)},  # past its end
        {**FULL, "scale_status_page": (50, False)},  # the last page: one row fewer read, no next_cursor
    ],
)
def test_a_list_read_answering_otherwise_at_one_size_stops_the_run(small: dict[str, tuple[int, bool]]) -> None:
    answers = {"11k": {"scale_status_page": "15 items and no next page, 19.6 kB"}, "1m": {}}
    with pytest.raises(BenchFailed, match="scale_status_page does not answer 50 items and a next page"):
        check_alike({"11k": small, "1m": FULL}, answers)
