"""The job catalogue: the jobs roi queues, their priorities, and the one way to ask for each. Imports nothing of domain.

Services enqueue through these functions, so a job's name, key, timeout and retries are written once; the worker
registers its functions under the same names.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from saq import Job, Queue

JobQueue: TypeAlias = Queue
"""What a service enqueues on, finds jobs in and aborts them through (`infra.queue.PriorityRedisQueue`)."""

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
LANE_OF_PRIORITY: dict[Priority, int] = {"high": 0, "normal": 1, "low": 2}
RUN_WORKFLOW = "run_workflow"
PARSE_UPLOAD = "parse_upload"
NOOP = "noop"
"""A job that does nothing: what the queue itself costs per job (the bench's `jobs_floor`)."""


def workflow_run(
    workflow_id: str, run_id: str, priority: Priority, inputs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The job of one run of a workflow, as `enqueue`'s keyword arguments; `run_id` is the job's key, so queuing the
    same run twice queues it once. `inputs`: what the run would read of its workflow, when the job carries it."""
    carried = {} if inputs is None else {"inputs": inputs}
    return {
        "key": run_id,
        "priority": LANE_OF_PRIORITY[priority],
        "timeout": 3600,
        "heartbeat": 15,
        "retries": 1,
        "ttl": 3600,
        "workflow_id": workflow_id,
        "run_id": run_id,
        **carried,
    }


async def enqueue_workflow_run(queue: JobQueue, workflow_id: str, run_id: str, priority: Priority) -> Job | None:
    """Queue one run of a workflow (see `workflow_run`)."""
    return await queue.enqueue(RUN_WORKFLOW, **workflow_run(workflow_id, run_id, priority))


def parse_job_key(upload_id: str) -> str:
    return f"parse-upload:{upload_id}"


async def enqueue_upload_parse(queue: JobQueue, upload_id: str) -> Job | None:
    """Queue the parse of a complete upload, in the high lane: someone is waiting for it. Queued once per upload."""
    return await queue.enqueue(
        PARSE_UPLOAD,
        key=parse_job_key(upload_id),
        priority=LANE_OF_PRIORITY["high"],
        timeout=600,
        heartbeat=30,
        retries=2,
        ttl=3600,
        upload_id=upload_id,
    )
