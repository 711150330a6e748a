"""Counts kept as appended changes, folded later: a status change no longer waits for every other one of its owner.

Why: every status change (queued, running, finished) updated its owner's count rows in its own transaction, so every
run of one owner, in the API and in every worker, queued on the same two rows and held them until its commit was on
disk. A burst of one user's runs went no faster than one commit at a time, three per run.

Now a change of status, a create and a delete append their counts' changes (`workflow_count_changes`, no unique key,
no lock on anything shared) and the worker's reconciler folds them into `workflow_count_totals` every few seconds
(`roi_fold_workflow_counts()`, one statement: what it deletes it adds). `workflow_counts` is the sum of both, so a
list's `total` stays exact in every snapshot, folded or not.

`roi_timestamp` is declared STABLE, so that the documents' triggers inline it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = (
    "LOCK TABLE roi_workflows IN SHARE MODE",
    # STABLE, as the to_char it calls: an IMMUTABLE SQL function calling a STABLE one is never inlined, and each of the
    # ~14 calls per document built went through the SQL function executor (1.6 µs against 0.6 µs inlined).
    "ALTER FUNCTION roi_timestamp(timestamptz) STABLE",
    "ALTER TABLE workflow_counts RENAME TO workflow_count_totals",
    """
CREATE TABLE workflow_count_changes (
    owner_id uuid NOT NULL,
    status varchar(16) NOT NULL,
    n integer NOT NULL
)
""",
    "CREATE INDEX idx_workflow_count_changes_owner ON workflow_count_changes (owner_id, status)",
    """
CREATE VIEW workflow_counts AS
SELECT owner_id, status, sum(n)::bigint AS n FROM (
    SELECT owner_id, status, n FROM workflow_count_totals
    UNION ALL SELECT owner_id, status, n FROM workflow_count_changes
) counted GROUP BY owner_id, status
""",
    # No foreign key on the changes: a delete cascading from a user would fail it. Changes of owners gone are dropped
    # here (a delete of the owner's workflows) and when folded.
    """
CREATE OR REPLACE FUNCTION roi_count_added_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_count_changes (owner_id, status, n) SELECT owner_id, status, count(*) FROM added GROUP BY 1, 2;
    RETURN NULL;
END $$
""",
    """
CREATE OR REPLACE FUNCTION roi_count_moved_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_count_changes (owner_id, status, n)
    SELECT owner_id, status, sum(n) FROM (
        SELECT owner_id, status, -1 AS n FROM before_rows
        UNION ALL SELECT owner_id, status, 1 FROM after_rows
    ) moved
    GROUP BY owner_id, status HAVING sum(n) <> 0;
    RETURN NULL;
END $$
""",
    """
CREATE OR REPLACE FUNCTION roi_count_removed_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_count_changes (owner_id, status, n)
    SELECT r.owner_id, r.status, -count(*) FROM removed r
    WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = r.owner_id) GROUP BY 1, 2;
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION roi_fold_workflow_counts() RETURNS bigint LANGUAGE sql AS $$
    WITH folded AS (DELETE FROM workflow_count_changes RETURNING owner_id, status, n),
    kept AS (
        INSERT INTO workflow_count_totals AS c (owner_id, status, n)
        SELECT f.owner_id, f.status, sum(f.n) FROM folded f
        WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = f.owner_id)
        GROUP BY 1, 2 HAVING sum(f.n) <> 0 ORDER BY 1, 2
        ON CONFLICT (owner_id, status) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT count(*) FROM folded
$$
""",
)

DOWNGRADE = (
    "LOCK TABLE roi_workflows IN SHARE MODE",
    "ALTER FUNCTION roi_timestamp(timestamptz) IMMUTABLE",
    "SELECT roi_fold_workflow_counts()",
    "DROP FUNCTION roi_fold_workflow_counts()",
    "DROP VIEW workflow_counts",
    "DROP TABLE workflow_count_changes",
    "ALTER TABLE workflow_count_totals RENAME TO workflow_counts",
)


LOCKING_COUNT_FUNCTIONS = (
    # 0005's, restored by the downgrade
    """
CREATE OR REPLACE FUNCTION roi_count_added_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_counts AS c (owner_id, status, n)
    SELECT owner_id, status, count(*) FROM added GROUP BY owner_id, status ORDER BY owner_id, status
    ON CONFLICT (owner_id, status) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$
""",
    """
CREATE OR REPLACE FUNCTION roi_count_moved_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE OR REPLACE FUNCTION roi_count_removed_workflows() RETURNS trigger LANGUAGE plpgsql AS $$
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
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in (*DOWNGRADE, *LOCKING_COUNT_FUNCTIONS):
        op.execute(statement)
