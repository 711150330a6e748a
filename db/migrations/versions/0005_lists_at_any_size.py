"""Lists that cost the same at any size: keyset indexes, exact counts kept beside the rows, steps stored once less.

- Pages continue after the last row's `(created_at, id)`: an index on `(owner_id[, status], created_at, id)` serves
  every page, at any depth, as one range scan read backwards (newest first).
- `total` was a `count(*)` over the owner's rows: 100,000 rows cost ~20 ms. Counts per owner (and per status for
  workflows) are now kept by triggers in the same transaction as the rows they count, so they are exact, and a
  total is a read of at most six rows. A statement's changes are summed per count row and applied in a fixed
  order, so concurrent writers queue on a row instead of deadlocking, and a progress write touches no count.
- `steps_json`, a copy of the steps kept only to build `doc`, is dropped: `doc` aggregates the steps itself.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

WORKFLOW_DOCUMENT = """
CREATE OR REPLACE FUNCTION roi_workflow_document() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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
END $$
"""

REFRESH_DOCUMENTS = """
CREATE OR REPLACE FUNCTION roi_refresh_steps_json() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE roi_workflows w SET doc = NULL WHERE w.id IN (SELECT DISTINCT workflow_id FROM changed_steps);
    RETURN NULL;
END $$
"""

COUNT_TABLES = (
    """
CREATE TABLE workflow_counts (
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status varchar(16) NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (owner_id, status)
)
""",
    """
CREATE TABLE upload_counts (
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE PRIMARY KEY,
    n bigint NOT NULL
)
""",
)

# Every change of counts locks the count rows it touches in (owner, status) order, within a statement and so across
# concurrent ones. Rows removed with their owner (ON DELETE CASCADE) find the owner's counts gone: an update of nothing.
COUNT_FUNCTIONS = (
    """
CREATE FUNCTION roi_count_added_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_counts AS c (owner_id, status, n)
    SELECT owner_id, status, count(*) FROM added GROUP BY owner_id, status ORDER BY owner_id, status
    ON CONFLICT (owner_id, status) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION roi_count_moved_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_counts AS c (owner_id, status, n)
    SELECT owner_id, status, sum(n) FROM (
        SELECT owner_id, status, -1 AS n FROM before_rows
        UNION ALL SELECT owner_id, status, 1 FROM after_rows
    ) moved
    GROUP BY owner_id, status HAVING sum(n) <> 0 ORDER BY owner_id, status
    ON CONFLICT (owner_id, status) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION roi_count_removed_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM workflow_counts c
    WHERE (c.owner_id, c.status) IN (SELECT owner_id, status FROM removed)
    ORDER BY c.owner_id, c.status FOR UPDATE;
    UPDATE workflow_counts c SET n = c.n - removed_rows.n
    FROM (SELECT owner_id, status, count(*) AS n FROM removed GROUP BY owner_id, status) removed_rows
    WHERE c.owner_id = removed_rows.owner_id AND c.status = removed_rows.status;
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION roi_count_added_uploads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO upload_counts AS c (owner_id, n)
    SELECT owner_id, count(*) FROM added GROUP BY owner_id ORDER BY owner_id
    ON CONFLICT (owner_id) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION roi_count_removed_uploads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM upload_counts c WHERE c.owner_id IN (SELECT owner_id FROM removed) ORDER BY c.owner_id FOR UPDATE;
    UPDATE upload_counts c SET n = c.n - removed_rows.n
    FROM (SELECT owner_id, count(*) AS n FROM removed GROUP BY owner_id) removed_rows
    WHERE c.owner_id = removed_rows.owner_id;
    RETURN NULL;
END $$
""",
)

COUNT_TRIGGERS = (
    """
CREATE TRIGGER roi_count_added AFTER INSERT ON roi_workflows
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION roi_count_added_workflows()
""",
    """
CREATE TRIGGER roi_count_moved AFTER UPDATE ON roi_workflows
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION roi_count_moved_workflows()
""",
    """
CREATE TRIGGER roi_count_removed AFTER DELETE ON roi_workflows
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION roi_count_removed_workflows()
""",
    """
CREATE TRIGGER roi_count_added AFTER INSERT ON uploads
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION roi_count_added_uploads()
""",
    """
CREATE TRIGGER roi_count_removed AFTER DELETE ON uploads
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION roi_count_removed_uploads()
""",
)

FILL_COUNTS = (
    """
INSERT INTO workflow_counts (owner_id, status, n)
SELECT owner_id, status, count(*) FROM roi_workflows GROUP BY 1, 2
""",
    """
INSERT INTO upload_counts (owner_id, n) SELECT owner_id, count(*) FROM uploads GROUP BY 1
""",
)


def upgrade() -> None:
    op.create_index("idx_workflow_owner_created_id", "roi_workflows", ["owner_id", "created_at", "id"])
    op.create_index("idx_workflow_owner_status_created_id", "roi_workflows", ["owner_id", "status", "created_at", "id"])
    op.create_index("idx_upload_owner_created_id", "uploads", ["owner_id", "created_at", "id"])
    op.drop_index("idx_workflow_owner_created", "roi_workflows")
    op.drop_index("idx_workflow_owner_status_created", "roi_workflows")
    op.drop_index("idx_upload_owner_created", "uploads")
    # Newest first over every owner's rows: no read asks for that, and the planner took it for deep pages.
    op.drop_index("idx_workflow_created", "roi_workflows")

    op.execute(WORKFLOW_DOCUMENT)
    op.execute(REFRESH_DOCUMENTS)
    op.drop_column("roi_workflows", "steps_json")

    # No row may change between the fill and the triggers.
    op.execute("LOCK TABLE roi_workflows, uploads IN SHARE MODE")
    for statement in (*COUNT_TABLES, *COUNT_FUNCTIONS, *COUNT_TRIGGERS, *FILL_COUNTS):
        op.execute(statement)


def downgrade() -> None:
    for table in ("roi_workflows", "uploads"):
        op.execute(f"DROP TRIGGER roi_count_added ON {table}")
        op.execute(f"DROP TRIGGER roi_count_removed ON {table}")
    op.execute("DROP TRIGGER roi_count_moved ON roi_workflows")
    for function in ("added_workflows", "moved_workflows", "removed_workflows", "added_uploads", "removed_uploads"):
        op.execute(f"DROP FUNCTION roi_count_{function}()")
    op.execute("DROP TABLE workflow_counts, upload_counts")
    op.add_column("roi_workflows", sa.Column("steps_json", sa.JSON(), nullable=False, server_default="[]"))
    op.create_index("idx_workflow_created", "roi_workflows", [sa.text("created_at DESC")])
    op.create_index("idx_upload_owner_created", "uploads", ["owner_id", sa.text("created_at DESC")])
    op.create_index(
        "idx_workflow_owner_status_created", "roi_workflows", ["owner_id", "status", sa.text("created_at DESC")]
    )
    op.create_index("idx_workflow_owner_created", "roi_workflows", ["owner_id", sa.text("created_at DESC")])
    op.drop_index("idx_upload_owner_created_id", "uploads")
    op.drop_index("idx_workflow_owner_status_created_id", "roi_workflows")
    op.drop_index("idx_workflow_owner_created_id", "roi_workflows")
