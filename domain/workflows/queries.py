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


_TOTAL = """SELECT coalesce(sum(c.n), 0)::bigint AS total FROM (
    SELECT owner_id, status, n FROM workflow_count_totals
    UNION ALL SELECT owner_id, status, n FROM workflow_count_changes
) c WHERE c.owner_id = $1"""
"""The totals and the changes not folded into them yet (migration 0007), summed without grouping: no sort."""
_NEWEST_FIRST = "ORDER BY w.created_at DESC, w.id DESC"


def _page(status: str, after: str = "", offset: bool = False) -> str:
    """A page: $1 owner, $2 the page's size plus one, $3 offset, then `status`'s and `after`'s parameters.

    An offset is found as a position first, by an index-only scan over `(owner_id[, status], created_at, id)`, and
    the page read from there: stepping over 10,000 rows then reads 10,000 index entries, not 10,000 documents.
    """
    total = f"{_TOTAL} {status.replace('w.', 'c.')}"
    if not offset:
        items = f"""
SELECT w.doc AS item FROM roi_workflows w WHERE w.owner_id = $1 {status} {after}
{_NEWEST_FIRST} LIMIT $2 OFFSET $3"""
        return page_statement(total, items)
    start = f"""
SELECT w.created_at, w.id FROM roi_workflows w WHERE w.owner_id = $1 {status} {_NEWEST_FIRST} OFFSET $3 LIMIT 1"""
    items = f"""
SELECT w.doc AS item FROM ({start}) s CROSS JOIN LATERAL (
    SELECT w.doc FROM roi_workflows w
    WHERE w.owner_id = $1 {status} AND (w.created_at, w.id) <= (s.created_at, s.id) {_NEWEST_FIRST} LIMIT $2
) w"""
    return page_statement(total, items)


_STATUS = "AND w.status = $4"
WORKFLOW_PAGE = _page("")
WORKFLOW_PAGE_WITH_STATUS = _page(_STATUS)
WORKFLOW_PAGE_AT_OFFSET = _page("", offset=True)
WORKFLOW_PAGE_WITH_STATUS_AT_OFFSET = _page(_STATUS, offset=True)
WORKFLOW_PAGE_AFTER = _page("", "AND (w.created_at, w.id) < ($4, $5)")
WORKFLOW_PAGE_WITH_STATUS_AFTER = _page(_STATUS, "AND (w.created_at, w.id) < ($5, $6)")

WORKFLOW_CASH_FLOWS = """
SELECT json_build_object(
    'workflow_id', w.id, 'upload_id', w.upload_id, 'cash_flows', to_json(coalesce(w.cash_flows, u.cash_flows))
)
FROM roi_workflows w LEFT JOIN uploads u ON u.id = w.upload_id AND u.owner_id = w.owner_id
WHERE w.id = $1 AND w.owner_id = $2"""
"""The workflow's cash flows as the analysis reads them: its own, or its ledger's summed per period."""

# One row while the workflow is the caller's: its result's JSON, or NULL when no run has succeeded yet.
WORKFLOW_RESULT = """
SELECT CASE WHEN r.workflow_id IS NULL THEN NULL ELSE json_build_object(
    'workflow_id', r.workflow_id, 'finished_at', roi_timestamp(r.finished_at),
    'metrics', r.metrics, 'simulation', r.simulation
) END
FROM roi_workflows w LEFT JOIN workflow_results r ON r.workflow_id = w.id
WHERE w.id = $1 AND w.owner_id = $2"""

QUEUE_RUN = """
WITH queued AS (
    UPDATE roi_workflows SET status = 'queued', job_id = $3, queued_at = $4, started_at = NULL, finished_at = NULL,
        heartbeat_at = NULL, progress = 0.0, current_step = NULL, error = NULL, updated_at = $4,
        doc = CASE WHEN EXISTS (SELECT 1 FROM workflow_steps WHERE workflow_id = $1) THEN 'null'::json END
    WHERE id = $1 AND owner_id = $2 AND status NOT IN ('queued', 'running')
    RETURNING id, priority, parameters, cash_flows, upload_id
), steps AS (
    UPDATE workflow_steps SET status = 'pending', progress = 0.0, started_at = NULL, finished_at = NULL, error = NULL,
        updated_at = $4
    WHERE workflow_id = (SELECT id FROM queued)
    RETURNING position, kind
)
SELECT priority, upload_id IS NOT NULL OR cardinality(cash_flows) <= $5 AS carried, parameters::text AS parameters,
    CASE WHEN cardinality(cash_flows) <= $5 THEN cash_flows END AS cash_flows, upload_id,
    (SELECT array_agg(kind ORDER BY position) FROM steps) AS kinds
FROM queued"""
"""draft or finished → queued under the run $3, its steps pending again, in one statement. Its priority and, unless
it has more than $5 cash flows (`carried`), what its run reads, for the job to carry; no row when the workflow is not
the caller's or is queued or running already. `doc` is built once, by the steps' trigger (JSON null tells the
workflow's own trigger to leave it to them, migration 0008); SQL NULL, for a workflow without steps, builds it at
once."""

OWNED_STATUS = "SELECT status FROM roi_workflows WHERE id = $1 AND owner_id = $2"
