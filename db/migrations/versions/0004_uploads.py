"""Uploads: tus uploads with their offset of record, write lease, expiry and parsed cash flows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATUSES = "status IN ('uploading', 'processing', 'ready', 'failed', 'expired')"


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("filetype", sa.String(255), nullable=True),
        sa.Column("tus_metadata", sa.Text(), nullable=True),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("upload_offset", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False, server_default="uploading"),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("periods", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cash_flows", postgresql.ARRAY(sa.Float()), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(STATUSES, name="status"),
        sa.CheckConstraint("upload_offset >= 0 AND upload_offset <= length", name="offset_within_length"),
    )
    op.create_index("idx_upload_owner_created", "uploads", ["owner_id", sa.text("created_at DESC")])
    op.create_index(
        "idx_upload_uploading_expires", "uploads", ["expires_at"], postgresql_where=sa.text("status = 'uploading'")
    )
    op.create_index(
        "idx_upload_processing_updated", "uploads", ["updated_at"], postgresql_where=sa.text("status = 'processing'")
    )


def downgrade() -> None:
    op.drop_table("uploads")
