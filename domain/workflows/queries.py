"""The hot reads as single SQL statements that hand back JSON built by PostgreSQL.

Why: an ORM read of a workflow and its steps costs ~1.6 ms of Python CPU; one statement through the raw
asyncpg pool, returning JSON bytes that go to the client untouched, costs a tenth of that. Each workflow's
JSON document (`doc`, the contract's Workflow with its steps) is kept in its row by triggers (migration 0003),
so a detail read is one index lookup and a page an aggregate of 50 stored documents.
The shapes must match `schemas.WorkflowOut`, `WorkflowStatus`, `WorkflowPage` and `WorkflowResultOut`.
"""

from __future__ import annotations

WORKFLOW_DETAIL = "SELECT w.doc FROM roi_workflows w WHERE w.id = $1 AND w.owner_id = $2"

# The owner's id (32 hex digits) and the JSON: the cached value carries whom it belongs to.
OWNED_WORKFLOW_STATUS = """
SELECT replace(w.owner_id::text, '-', ''), json_build_object(
    'id', w.id, 'status', w.status, 'progress', w.progress, 'current_step', w.current_step,
    'updated_at', roi_timestamp(w.updated_at)
) FROM roi_workflows w WHERE w.id = $1"""


def _workflow_page(status_filter: str) -> str:
    return f"""
SELECT json_build_object(
    'items', coalesce((
        SELECT json_agg(w.doc ORDER BY w.created_at DESC)
        FROM (
            SELECT w.doc, w.created_at FROM roi_workflows w
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
WORKFLOW_RESULT = """
SELECT CASE WHEN r.workflow_id IS NULL THEN NULL ELSE json_build_object(
    'workflow_id', r.workflow_id, 'finished_at', roi_timestamp(r.finished_at),
    'metrics', r.metrics, 'simulation', r.simulation
) END
FROM roi_workflows w LEFT JOIN workflow_results r ON r.workflow_id = w.id
WHERE w.id = $1 AND w.owner_id = $2"""
