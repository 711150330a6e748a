"""The hot reads as single SQL statements that let PostgreSQL build the response JSON.

Why: an ORM read of a workflow and its steps costs ~1.6 ms of Python CPU; one statement through the raw
asyncpg pool, returning JSON bytes that go to the client untouched, costs a tenth of that.
The JSON shapes here must match `schemas.WorkflowOut`, `WorkflowStatus` and `WorkflowPage` (tests decode them).
"""

from __future__ import annotations


def _timestamp(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


_STEPS_JSON = f"""(
    SELECT coalesce(json_agg(json_build_object(
        'id', s.id, 'position', s.position, 'kind', s.kind, 'agent', s.agent, 'status', s.status,
        'progress', s.progress, 'started_at', {_timestamp("s.started_at")},
        'finished_at', {_timestamp("s.finished_at")}, 'error', s.error
    ) ORDER BY s.position), '[]'::json)
    FROM workflow_steps s WHERE s.workflow_id = w.id
)"""

_WORKFLOW_JSON = f"""json_build_object(
    'id', w.id, 'name', w.name, 'description', w.description, 'status', w.status, 'priority', w.priority,
    'progress', w.progress, 'parameters', w.parameters, 'upload_id', w.upload_id, 'job_id', w.job_id,
    'created_at', {_timestamp("w.created_at")}, 'updated_at', {_timestamp("w.updated_at")},
    'queued_at', {_timestamp("w.queued_at")}, 'started_at', {_timestamp("w.started_at")},
    'finished_at', {_timestamp("w.finished_at")}, 'error', w.error, 'steps', {_STEPS_JSON}
)"""

WORKFLOW_DETAIL = f"SELECT {_WORKFLOW_JSON} FROM roi_workflows w WHERE w.id = $1 AND w.owner_id = $2"

# The owner's id (32 hex digits) followed by the JSON: the cached value carries whom it belongs to.
OWNED_WORKFLOW_STATUS = f"""
SELECT convert_to(replace(w.owner_id::text, '-', '') || json_build_object(
    'id', w.id, 'status', w.status, 'progress', w.progress, 'current_step', w.current_step,
    'updated_at', {_timestamp("w.updated_at")}
)::text, 'UTF8') FROM roi_workflows w WHERE w.id = $1"""

_WORKFLOW_COLUMNS = (
    "w.id, w.name, w.description, w.status, w.priority, w.progress, w.parameters, w.upload_id, w.job_id, "
    "w.created_at, w.updated_at, w.queued_at, w.started_at, w.finished_at, w.error"
)


def _workflow_page(status_filter: str) -> str:
    return f"""
SELECT json_build_object(
    'items', coalesce((
        SELECT json_agg({_WORKFLOW_JSON} ORDER BY w.created_at DESC)
        FROM (
            SELECT {_WORKFLOW_COLUMNS} FROM roi_workflows w
            WHERE w.owner_id = $1 {status_filter}
            ORDER BY w.created_at DESC LIMIT $2 OFFSET $3
        ) w
    ), '[]'::json),
    'total', (SELECT count(*) FROM roi_workflows w WHERE w.owner_id = $1 {status_filter}),
    'limit', $2::int, 'offset', $3::int
)"""


WORKFLOW_PAGE = _workflow_page("")
WORKFLOW_PAGE_WITH_STATUS = _workflow_page("AND w.status = $4")

# One row while the workflow is the caller's: its result's JSON, or NULL when no run has succeeded yet.
WORKFLOW_RESULT = f"""
SELECT CASE WHEN r.workflow_id IS NULL THEN NULL ELSE json_build_object(
    'workflow_id', r.workflow_id, 'finished_at', {_timestamp("r.finished_at")},
    'metrics', r.metrics, 'simulation', r.simulation
) END
FROM roi_workflows w LEFT JOIN workflow_results r ON r.workflow_id = w.id
WHERE w.id = $1 AND w.owner_id = $2"""
