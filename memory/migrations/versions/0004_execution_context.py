"""Snapshots of the orchestrator's ExecutionContext.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "execution_context_snapshots",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("as_of", sa.BigInteger, nullable=False, comment="event time of the context, UTC ms"),
        sa.Column("context", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_execution_context_snapshots_agent_as_of", "execution_context_snapshots",
                    ["agent", "as_of"])


def downgrade() -> None:
    op.drop_table("execution_context_snapshots")
