"""The model registry: versioned trained models, each a file referenced by path and sha256.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=False, comment="what the model is for, e.g. technical"),
        sa.Column("version", sa.Integer(), nullable=False, comment="1, 2, ... per name"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("params", JSONB(), nullable=False),
        sa.Column("metrics", JSONB(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False, comment="the model file"),
        sa.Column("sha256", sa.Text(), nullable=False, comment="hex digest of the model file"),
        sa.UniqueConstraint("name", "version", name="uq_models_name_version"),
    )


def downgrade() -> None:
    op.drop_table("models")
