"""Fewer trigger runs per workflow run: one document build per statement, a count change only on a status change.

Why: a trivial run (queue, claim, finish) spent about half of its PostgreSQL CPU in triggers. A statement that changes
a workflow and its steps (queueing a run, a run's commit) built the workflow's document twice: once for the workflow's
row, from the steps as they were before the statement (the steps' trigger then replaced it), and once more from the
steps' trigger. And the statement-level count trigger captured both transition tables of every update of a workflow
(the whole row, document included) to find, most of the time, that no status had changed.

- Such a statement now sets `doc` to the JSON `null` (not SQL NULL) on the workflow's row: the document trigger keeps
  it as it is, and the steps' trigger, which the same statement fires, builds the document once, from the new steps,
  in the same transaction. A reader never sees the placeholder: it is replaced before the statement ends. Every other
  write (`doc` untouched, or SQL NULL) builds the document as before.
- Status moves are counted by a row-level trigger whose `WHEN` clause lets PostgreSQL skip it, without calling any
  function or capturing any row, when neither the status nor the owner changed. It appends the same two changes
  (-1 old status, +1 new) as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_DOCUMENT_BODY = """
    NEW.doc := json_build_object(
        'id', NEW.id, 'name', NEW.name, 'description', NEW.description, 'status', NEW.status,
        'priority', NEW.priority, 'progress', NEW.progress, 'parameters', NEW.parameters,
        'upload_id', NEW.upload_id, 'job_id', NEW.job_id,
        'created_at', roi_timestamp(NEW.created_at), 'updated_at', roi_timestamp(NEW.updated_at),
        'queued_at', roi_timestamp(NEW.queued_at), 'started_at', roi_timestamp(NEW.started_at),
        'finished_at', roi_timestamp(NEW.finished_at), 'error', NEW.error,
        'steps', (
            SELECT coalesce(json_agg(json_build_object(
                'id', s.id, 'position', s.position, 'kind', s.kind, 'agent', s.agent, 'status', s.status,
                'progress', s.progress, 'started_at', roi_timestamp(s.started_at),
                'finished_at', roi_timestamp(s.finished_at), 'error', s.error
            ) ORDER BY s.position), '[]'::json)
            FROM workflow_steps s WHERE s.workflow_id = NEW.id
        )
    );
    RETURN NEW;
"""

WORKFLOW_DOCUMENT = f"""
CREATE OR REPLACE FUNCTION roi_workflow_document() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- JSON null: the statement changes this workflow's steps too, and their trigger builds the document once they are
    -- written. json_typeof reads only the first token of a stored document.
    IF NEW.doc IS NOT NULL AND json_typeof(NEW.doc) = 'null' THEN
        RETURN NEW;
    END IF;{_DOCUMENT_BODY}END $$
"""

WORKFLOW_DOCUMENT_0005 = f"""
CREATE OR REPLACE FUNCTION roi_workflow_document() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_DOCUMENT_BODY}END $$
"""

COUNT_MOVED_ROW = """
CREATE FUNCTION roi_count_moved_workflow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_count_changes (owner_id, status, n)
    VALUES (OLD.owner_id, OLD.status, -1), (NEW.owner_id, NEW.status, 1);
    RETURN NULL;
END $$
"""

UPGRADE = (
    "LOCK TABLE roi_workflows IN SHARE MODE",
    WORKFLOW_DOCUMENT,
    "DROP TRIGGER roi_count_moved ON roi_workflows",
    COUNT_MOVED_ROW,
    """
CREATE TRIGGER roi_count_moved AFTER UPDATE ON roi_workflows FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.owner_id IS DISTINCT FROM NEW.owner_id)
    EXECUTE FUNCTION roi_count_moved_workflow()
""",
)

DOWNGRADE = (
    "LOCK TABLE roi_workflows IN SHARE MODE",
    "DROP TRIGGER roi_count_moved ON roi_workflows",
    "DROP FUNCTION roi_count_moved_workflow()",
    # 0005's trigger, calling 0007's function (still in place)
    """
CREATE TRIGGER roi_count_moved AFTER UPDATE ON roi_workflows
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION roi_count_moved_workflows()
""",
    WORKFLOW_DOCUMENT_0005,
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
