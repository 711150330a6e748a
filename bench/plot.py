"""The report as a picture: p50/p95/p99 of every row on one log axis, with the brief's target and our goal marked.

Why a log axis: the rows span four orders of magnitude (a cached read in milliseconds, a 10 MiB upload in tenths of
a second, a burst of 200 jobs in seconds), and the question a reader asks of each is how far it is from its limit.
matplotlib is an optional extra (`pip install 'roi[bench]'`), imported only here, with the Agg backend (no display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from bench.report import GoalResult, Report, ScenarioResult
from bench.scenarios import BRIEF, GOALS, Goal

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PERCENTILES = (("p99", "#c6dbef"), ("p95", "#6baed6"), ("p50", "#08519c"))
"""Drawn in this order, each bar over the longer one before it."""
BRIEF_COLOR = "#d62728"
GOAL_COLOR = "#2ca02c"
GROUPS = {
    "health": "API",
    "workflow": "API",
    "agents": "API",
    "jobs": "jobs",
    "ws": "WebSocket",
    "upload": "uploads",
    "mixed": "mixed load",
    "scale": "scale",
}
"""Rows by the start of their name, a line between groups."""
ROW_INCHES = 0.3
PLOT_HINT = "install matplotlib for the latency plot: pip install 'roi[bench]' (or 'matplotlib>=3.8,<4')"


def write_plot(report: Report, path: Path) -> bool:
    """Write the PNG at `path`; False, and nothing written, if matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = report.scenarios
    floor_p95 = next((r.p95_ms for r in rows if r.name == "health"), math.nan)
    p95_by_row = {r.name: r.p95_ms for r in rows}
    figure = Figure(figsize=(13, 1.6 + ROW_INCHES * len(rows)), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    left = _left_edge(rows)
    positions = range(len(rows))
    for name, color in PERCENTILES:
        widths = [max(getattr(r, f"{name}_ms") - left, 0.0) for r in rows]
        axes.barh(positions, widths, left=left, height=0.7, color=color, label=name, zorder=2)
    brief = {name: target.max_p95_ms for target in BRIEF for name in target.scenarios}
    goals_by_row: dict[str, list[Goal]] = {}
    for goal in GOALS:
        goals_by_row.setdefault(goal.scenario, []).append(goal)
    verdicts = _verdicts(report)
    for y, row in enumerate(rows):
        if row.name in brief:
            axes.vlines(brief[row.name], y - 0.45, y + 0.45, colors=BRIEF_COLOR, linewidth=2.2, zorder=3)
        for goal in goals_by_row.get(row.name, []):
            for statistic, limit in _goal_limits(goal, p95_by_row.get(goal.floor, math.nan)):
                axes.vlines(limit, y - 0.45, y + 0.45, colors=GOAL_COLOR, linewidth=2.2, zorder=3)
                axes.annotate(
                    statistic,
                    (limit, y),
                    xytext=(3, 0),
                    textcoords="offset points",
                    fontsize=6.5,
                    color=GOAL_COLOR,
                    va="center",
                    zorder=4,
                    bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                )
        # Beside the axes: the p95, then the verdicts.
        margin = axes.get_yaxis_transform()
        axes.annotate(
            f"p95 {_value(row.p95_ms)}",
            (1.0, y),
            xycoords=margin,
            xytext=(5, 0),
            textcoords="offset points",
            fontsize=8,
            color="#444444",
            va="center",
        )
        text, color = verdicts.get(row.name, ("", "black"))
        axes.annotate(
            text,
            (1.0, y),
            xycoords=margin,
            xytext=(70, 0),
            textcoords="offset points",
            fontsize=8,
            va="center",
            color=color,
        )
    _group_lines(axes, rows)
    axes.set_xscale("log")
    axes.set_xlim(left, _right_edge(rows, brief))
    axes.set_yticks(list(positions), [r.name for r in rows], fontsize=8.5)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlabel("latency, ms (log scale)")
    axes.grid(axis="x", which="major", color="#dddddd", zorder=0)
    axes.grid(axis="x", which="minor", color="#f0f0f0", zorder=0)
    figure.suptitle(
        f"roi bench {report.started_at:%Y-%m-%d %H:%M} UTC: p50/p95/p99 per row; "
        f"floor ({rows[0].name}) p95 {floor_p95:.2f} ms; {report.machine.cores} cores, "
        f"{report.settings.workers} Granian workers",
        fontsize=10,
    )
    handles: list[Artist] = [Patch(color=color, label=name) for name, color in reversed(PERCENTILES)]
    handles += [
        Line2D([], [], color=BRIEF_COLOR, linewidth=2.2, label="brief's target (p95)"),
        Line2D([], [], color=GOAL_COLOR, linewidth=2.2, label="our goal (its statistic beside it)"),
    ]
    axes.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), fontsize=8)
    figure.savefig(path)
    return True


def _value(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.3g} ms"


def _left_edge(rows: list[ScenarioResult]) -> float:
    """A power of ten well under the fastest p50, so that every bar has a visible length."""
    smallest = min((r.p50_ms for r in rows if r.p50_ms > 0), default=1.0)
    return float(10 ** math.floor(math.log10(smallest / 1.5)))


def _right_edge(rows: list[ScenarioResult], brief: dict[str, float]) -> float:
    largest = max([*(r.p99_ms for r in rows if not math.isnan(r.p99_ms)), *brief.values()])
    return float(10 ** math.ceil(math.log10(largest * 1.5)))


def _goal_limits(goal: Goal, floor_p95_ms: float) -> list[tuple[str, float]]:
    """The goal's latency limits in ms (a p95 relative to its floor row's, in ms of this run); not its req/s share."""
    limits = [("p50", goal.max_p50_ms), ("p95", goal.max_p95_ms), ("p99", goal.max_p99_ms)]
    limits.append(("p95", goal.max_p95_vs_floor * floor_p95_ms))
    return [(statistic, limit) for statistic, limit in limits if math.isfinite(limit)]


def _verdicts(report: Report) -> dict[str, tuple[str, str]]:
    """Per row, `brief PASS  goal FAIL` (only the verdicts it has) and its colour: red if any failed."""
    brief = {result.scenario: result.passed for result in report.brief}
    goals: dict[str, list[GoalResult]] = {}
    for goal in report.goals:
        goals.setdefault(goal.scenario, []).append(goal)
    verdicts = {}
    for row in report.scenarios:
        parts, passed = [], True
        if row.name in brief:
            parts.append(f"brief {'PASS' if brief[row.name] else 'FAIL'}")
            passed &= brief[row.name]
        if row.name in goals:
            goal_passed = all(goal.passed for goal in goals[row.name])
            parts.append(f"goal {'PASS' if goal_passed else 'FAIL'}")
            passed &= goal_passed
        if parts:
            verdicts[row.name] = ("  ".join(parts), "#1a7f37" if passed else BRIEF_COLOR)
    return verdicts


def _group_lines(axes: Axes, rows: list[ScenarioResult]) -> None:
    """A thin line between groups of rows (API, jobs, WebSocket, uploads, mixed load)."""
    groups = [next((group for prefix, group in GROUPS.items() if r.name.startswith(prefix)), "") for r in rows]
    for y in range(1, len(rows)):
        if groups[y] != groups[y - 1]:
            axes.axhline(y - 0.5, color="#999999", linewidth=0.8, zorder=1)
