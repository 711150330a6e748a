"""Runs: a heartbeat for the running job, and the stored result of the last successful run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("roi_workflows", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "idx_workflow_active_heartbeat",
        "roi_workflows",
        ["status", "heartbeat_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_table(
        "workflow_results",
        sa.Column("workflow_id", sa.Uuid(), sa.ForeignKey("roi_workflows.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metrics", postgresql.JSONB(), nullable=False),
        sa.Column("simulation", postgresql.JSONB(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("workflow_results")
    op.drop_index("idx_workflow_active_heartbeat", table_name="roi_workflows")
    op.drop_column("roi_workflows", "heartbeat_at")
