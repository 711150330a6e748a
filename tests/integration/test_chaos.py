"""The chaos run, as a user of `roi bench` starts it: a minute of the mixed load under seeded faults, after which
every check holds (no run stuck, no wrong result, no upload lost or corrupted, no unannounced event gap, no 5xx but
503 and those only while a dependency was down, nothing left behind).

Select them with `-m chaos`. The run owns its PostgreSQL, Valkey and `roi serve`, so it disturbs no other test. The
seed is fixed, so a failure is replayed by the command the assertion message prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.chaos_faults import FAULTS, KILL_GRANIAN_WORKER

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SEED = 20261327
"""With Granian worker kills its first minute injected a cut upload, a fast PostgreSQL restart, two roi worker kills
and a Granian worker kill (how long each restart takes decides how many fit)."""
DURATION_S = 60
RUN_TIMEOUT_S = 540
CHECKS = {
    "every run ended, every failure with a reason",
    "every succeeded result equals its recomputation",
    "every finished upload stored whole and parsed; none acknowledged beyond what was stored",
    "every subscriber saw every event in order, or was told recovered: false",
    "no HTTP answer other than 2xx/3xx/4xx/503",
    "503 only while a dependency was down",
    "requests lost only while connections were cut",
    "roi serve stayed up",
    "every fault injected, every cut upload resumed",
    "no process or connection left behind",
}


def _chaos(tmp_path: Path, duration_s: int, faults: list[str]) -> dict[str, Any]:
    """`roi bench --scenario chaos`; its JSON report, once it exited 0 (else its output in the failure)."""
    report = tmp_path / "chaos.json"
    command = [sys.executable, "-m", "app", "bench", "--scenario", "chaos", "--duration", str(duration_s)]
    command += ["--seed", str(SEED), *(arg for fault in faults for arg in ("--fault", fault)), "--output", str(report)]
    outcome = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    output = outcome.stderr[-6000:] + outcome.stdout[-6000:]
    assert outcome.returncode == 0, f"{' '.join(command[1:])} exited {outcome.returncode}:\n{output}"
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_a_minute_of_faults_under_the_mixed_load_loses_nothing(tmp_path: Path) -> None:
    report = _chaos(tmp_path, DURATION_S, FAULTS)

    assert {check["name"] for check in report["checks"]} >= CHECKS
    assert all(check["passed"] for check in report["checks"]), report["checks"]
    injected = [fault for fault in report["faults"] if fault["kind"] != "crash"]
    assert len(injected) >= 3, injected
    assert report["runs_started"] > 0
    assert report["uploads_finished"] > 0


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_killed_granian_workers_are_replaced_under_load(tmp_path: Path) -> None:
    report = _chaos(tmp_path, 30, [KILL_GRANIAN_WORKER])

    assert all(check["passed"] for check in report["checks"]), report["checks"]
    assert report["faults_by_kind"].get(KILL_GRANIAN_WORKER, 0) >= 1
