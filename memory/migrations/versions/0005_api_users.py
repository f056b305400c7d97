"""Users of the ops API (roles, scrypt password hashes, TOTP secrets).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_users",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("role", sa.Text(), nullable=False, comment="viewer, operator or admin"),
        sa.Column("password_hash", sa.Text(), nullable=False, comment="scrypt$n$r$p$salt$hash"),
        sa.Column("totp_secret", sa.Text(), nullable=False, comment="base32 RFC 6238 secret"),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="ck_api_users_role"),
    )


def downgrade() -> None:
    op.drop_table("api_users")
