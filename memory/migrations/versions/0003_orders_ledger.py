"""Orders, their append-only transitions and fills; the ledger's entries and latest state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_APPEND_ONLY = """
CREATE FUNCTION cryptiq_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP;
END;
$$
"""


def _created_at() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.Text(), primary_key=True),
        sa.Column("decision_id", sa.Text(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("order_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("filled_quantity", sa.Numeric(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, comment="seq of the latest transition"),
        sa.Column("created_ts", sa.BigInteger(), nullable=False, comment="event time, UTC ms"),
        sa.Column("updated_ts", sa.BigInteger(), nullable=False, comment="event time, UTC ms"),
        sa.Column("state", JSONB(), nullable=False, comment="the latest OrderUpdated"),
        _created_at(),
    )
    op.create_index("ix_orders_decision_id", "orders", ["decision_id"])
    op.create_index("ix_orders_exchange_status", "orders", ["exchange", "status"])
    op.create_table(
        "order_transitions",
        sa.Column("client_order_id", sa.Text(), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="event time, UTC ms"),
        sa.Column("from_status", sa.Text()),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("reasons", JSONB(), nullable=False),
        sa.Column("event", JSONB(), nullable=False, comment="the OrderUpdated"),
        _created_at(),
    )
    op.create_table(
        "order_fills",
        sa.Column("trade_id", sa.Text(), primary_key=True),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("price", sa.Numeric(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("fee", sa.Numeric(), nullable=False),
        sa.Column("fee_asset", sa.Text(), nullable=False),
        sa.Column("liquidity", sa.Text(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="event time, UTC ms"),
        sa.Column("event", JSONB(), nullable=False, comment="the OrderFilled"),
        _created_at(),
    )
    op.create_index("ix_order_fills_client_order_id", "order_fills", ["client_order_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True, comment="booking order"),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("entry_id", sa.Text(), nullable=False, comment="transfer:<id> or fill:<trade id>"),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="event time, UTC ms"),
        sa.Column("kind", sa.Text(), nullable=False, comment="transfer or fill"),
        sa.Column("payload", JSONB(), nullable=False),
        _created_at(),
        sa.UniqueConstraint("account", "entry_id", name="uq_ledger_entries_account_entry_id"),
    )
    op.create_table(
        "ledger_state",
        sa.Column("account", sa.Text(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False, comment="entries applied"),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="event time of the newest entry, UTC ms"),
        sa.Column("state", JSONB(), nullable=False, comment="Ledger.snapshot()"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.execute(_APPEND_ONLY)
    for table in ("order_transitions", "order_fills", "ledger_entries"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION cryptiq_append_only()"
        )


def downgrade() -> None:
    for table in ("ledger_state", "ledger_entries", "order_fills", "order_transitions", "orders"):
        op.drop_table(table)
    op.execute("DROP FUNCTION cryptiq_append_only()")
