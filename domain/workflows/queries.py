"""The hot reads as single SQL statements that hand back JSON built by PostgreSQL.

Why: an ORM read of a workflow and its steps costs ~1.6 ms of Python CPU; one statement through the raw
asyncpg pool, returning JSON bytes that go to the client untouched, costs a tenth of that. Each workflow's
JSON document (`doc`, the contract's Workflow with its steps) is kept in its row by triggers, so a detail read is
one index lookup and a page one index range scan over stored documents, with its total read from the counts the
triggers keep.
The shapes must match `schemas.WorkflowOut`, `WorkflowStatus`, `WorkflowPage` and `WorkflowResultOut`.
"""

from __future__ import annotations

from domain.pagination import page_statement

WORKFLOW_DETAIL = "SELECT w.doc FROM roi_workflows w WHERE w.id = $1 AND w.owner_id = $2"

# The owner's id (32 hex digits) and the JSON: the cached value carries whom it belongs to.
OWNED_WORKFLOW_STATUS = """
SELECT replace(w.owner_id::text, '-', ''), json_build_object(
    'id', w.id, 'status', w.status, 'progress', w.progress, 'current_step', w.current_step,
    'updated_at', roi_timestamp(w.updated_at)
) FROM roi_workflows w WHERE w.id = $1"""


_TOTAL = "SELECT coalesce(sum(c.n), 0)::bigint AS total FROM workflow_counts c WHERE c.owner_id = $1"
_ITEMS = """
SELECT w.doc AS item, w.created_at, w.id FROM roi_workflows w WHERE w.owner_id = $1 {condition}
ORDER BY w.created_at DESC, w.id DESC LIMIT $2 OFFSET $3"""
_AFTER = "(w.created_at, w.id) < (${}, ${})"

# A page: $1 owner, $2 the page's size plus one, $3 offset; then the status, then the cursor's position.
WORKFLOW_PAGE = page_statement(_TOTAL, _ITEMS.format(condition=""))
WORKFLOW_PAGE_WITH_STATUS = page_statement(f"{_TOTAL} AND c.status = $4", _ITEMS.format(condition="AND w.status = $4"))
WORKFLOW_PAGE_AFTER = page_statement(_TOTAL, _ITEMS.format(condition="AND " + _AFTER.format(4, 5)))
WORKFLOW_PAGE_WITH_STATUS_AFTER = page_statement(
    f"{_TOTAL} AND c.status = $4", _ITEMS.format(condition="AND w.status = $4 AND " + _AFTER.format(5, 6))
)

# One row while the workflow is the caller's: its result's JSON, or NULL when no run has succeeded yet.
WORKFLOW_RESULT = """
SELECT CASE WHEN r.workflow_id IS NULL THEN NULL ELSE json_build_object(
    'workflow_id', r.workflow_id, 'finished_at', roi_timestamp(r.finished_at),
    'metrics', r.metrics, 'simulation', r.simulation
) END
FROM roi_workflows w LEFT JOIN workflow_results r ON r.workflow_id = w.id
WHERE w.id = $1 AND w.owner_id = $2"""
