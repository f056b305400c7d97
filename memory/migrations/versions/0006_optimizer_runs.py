"""Optimisation runs of `cryptiq optimize` and every candidate they tried.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "optimizer_runs",
        sa.Column("id", sa.Text(), primary_key=True, comment="uuid5 of the run's inputs"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("timeframe", sa.Text(), nullable=False),
        sa.Column("strategy", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False, comment="tpe or ga"),
        sa.Column("objective", sa.Text(), nullable=False, comment="the metric scored, e.g. sharpe"),
        sa.Column("at", sa.BigInteger(), nullable=False, comment="close of the last candle used, UTC ms"),
        sa.Column("config", JSONB(), nullable=False),
        sa.Column("params", JSONB(), nullable=False, comment="recommended parameters"),
        sa.Column("score", sa.Float(), comment="objective of the stitched out-of-sample curve"),
        sa.Column("out_of_sample", JSONB(), nullable=False),
        sa.Column("in_sample", JSONB(), nullable=False),
        sa.Column("regimes", JSONB(), nullable=False, comment="out-of-sample per regime"),
        sa.Column("folds", JSONB(), nullable=False),
    )
    op.create_index("ix_optimizer_runs_strategy_symbol_at", "optimizer_runs", ["strategy", "symbol", "at"])
    op.create_table(
        "optimizer_candidates",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Text(), sa.ForeignKey("optimizer_runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("trial", sa.Integer(), nullable=False),
        sa.Column("params", JSONB(), nullable=False),
        sa.Column("score", sa.Float(), comment="objective on the train window (in sample)"),
        sa.Column("feasible", sa.Boolean(), nullable=False),
        sa.Column("chosen", sa.Boolean(), nullable=False, comment="the window's winner"),
        sa.Column("train_metrics", JSONB(), nullable=False),
        sa.Column("test_score", sa.Float(), comment="objective on the test window"),
        sa.Column("test_metrics", JSONB()),
        sa.Column("error", sa.Text(), comment="why the parameters were invalid"),
        sa.UniqueConstraint("run_id", "window", "trial", name="uq_optimizer_candidates_trial"),
    )


def downgrade() -> None:
    op.drop_table("optimizer_candidates")
    op.drop_index("ix_optimizer_runs_strategy_symbol_at", table_name="optimizer_runs")
    op.drop_table("optimizer_runs")
