"""Users, agents, workflows and their steps, with the indexes the read paths need; seed the agents.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import datetime
import uuid

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AGENTS = (
    ("ingest", "Ingest", "Loads the cash flows from the request or from a parsed upload."),
    ("validate", "Validate", "Checks that the series is finite, non-empty and has something invested."),
    ("analyze", "Analyze", "Computes NPV, IRR, ROI, payback and discounted payback."),
    ("simulate", "Simulate", "Runs the Monte Carlo simulation of the NPV under volatile cash flows."),
    ("report", "Report", "Assembles and stores the result of the run."),
)


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        *_audit_columns(),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    agents = op.create_table(
        "agents",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("step_kinds", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        *_audit_columns(),
        sa.UniqueConstraint("slug", name="uq_agents_slug"),
    )
    op.create_table(
        "roi_workflows",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("current_step", sa.String(32), nullable=True),
        sa.Column("parameters", postgresql.JSONB(), nullable=False),
        sa.Column("cash_flows", postgresql.ARRAY(sa.Float()), nullable=True),
        sa.Column("upload_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        *_audit_columns(),
        sa.CheckConstraint(
            "status IN ('draft', 'queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="status",
        ),
        sa.CheckConstraint("priority IN ('high', 'normal', 'low')", name="priority"),
    )
    op.create_index("idx_workflow_status", "roi_workflows", ["status"])
    op.create_index("idx_workflow_created", "roi_workflows", [sa.text("created_at DESC")])
    op.create_index("idx_workflow_owner_created", "roi_workflows", ["owner_id", sa.text("created_at DESC")])
    op.create_index(
        "idx_workflow_owner_status_created", "roi_workflows", ["owner_id", "status", sa.text("created_at DESC")]
    )
    op.create_table(
        "workflow_steps",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("workflow_id", sa.Uuid(), sa.ForeignKey("roi_workflows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        *_audit_columns(),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')",
            name="status",
        ),
    )
    op.create_index("idx_steps_workflow", "workflow_steps", ["workflow_id", "position"], unique=True)

    now = datetime.datetime.now(datetime.UTC)
    op.bulk_insert(
        agents,
        [
            {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"roi:agent:{slug}"),
                "slug": slug,
                "name": name,
                "description": description,
                "step_kinds": [slug],
                "available": True,
                "created_at": now,
                "updated_at": now,
            }
            for slug, name, description in AGENTS
        ],
    )


def downgrade() -> None:
    op.drop_table("workflow_steps")
    op.drop_table("roi_workflows")
    op.drop_table("agents")
    op.drop_table("users")
