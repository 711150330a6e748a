"""Revocable tokens: logout revokes one token, a password change every token issued before it.

- `users.token_generation`: tokens carry the generation they were issued in (tokens from before this revision carry
  none and count as 0); a password change raises it.
- `token_revocations`: one row per logout (`jti`) or password change (`generation`), kept until the tokens it
  refuses have expired. It is the source of truth every API process reads (the rows created since its last look,
  a few times a second), so a revocation holds on every host, and across a Redis restart.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "token_revocations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("jti", sa.String(64), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
    )
    op.create_index("idx_token_revocations_created", "token_revocations", ["created_at"])
    op.create_index("idx_token_revocations_expires", "token_revocations", ["expires_at"])


def downgrade() -> None:
    op.drop_table("token_revocations")
    op.drop_column("users", "token_generation")
