"""The agent decision log and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_decisions",
        sa.Column("id", sa.Text(), primary_key=True, comment="deterministic decision id"),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text()),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="event time, UTC ms"),
        sa.Column("kind", sa.Text()),
        sa.Column("input_ids", JSONB(), nullable=False),
        sa.Column("output_ids", JSONB(), nullable=False),
        sa.Column("reasons", JSONB(), nullable=False),
        sa.Column("trace", JSONB()),
        sa.Column("outcome", JSONB()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_agent_decisions_agent_ts", "agent_decisions", ["agent", "ts"])
    op.create_index("ix_agent_decisions_symbol_ts", "agent_decisions", ["symbol", "ts"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="event time, UTC ms"),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("detail", JSONB()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index("ix_agent_decisions_symbol_ts", table_name="agent_decisions")
    op.drop_index("ix_agent_decisions_agent_ts", table_name="agent_decisions")
    op.drop_table("agent_decisions")
