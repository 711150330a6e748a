"""Job metrics, recorded in the worker processes (Prometheus multiprocess mode gathers them at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

JOB_START_LATENCY = Histogram(
    "roi_job_start_latency_seconds", "From queued to started, per priority", ["priority"], buckets=LATENCY_BUCKETS
)
JOB_DURATION = Histogram(
    "roi_job_duration_seconds", "From started to finished, per outcome", ["outcome"], buckets=DURATION_BUCKETS
)
RUNS_RECONCILED = Counter("roi_runs_reconciled_total", "Runs the reconciler failed or re-queued", ["action"])
