"""The tables of agent history. Alembic migrations (memory/migrations) create and evolve them.

Event times are BIGINT UTC milliseconds, as on the wire, so a row compares with the event that
produced it without time-zone conversions; `created_at` is only when the row was written.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, MetaData, Numeric, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The metadata every CryptIQ table belongs to."""


class AgentDecision(Base):
    """One decision an agent took: what it saw (input ids), what it emitted, and why."""

    __tablename__ = "agent_decisions"

    id: Mapped[str] = mapped_column(Text, primary_key=True, comment="deterministic decision id")
    agent: Mapped[str] = mapped_column(Text, nullable=False)
    symbol: Mapped[str | None] = mapped_column(Text)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False, comment="event time, UTC ms")
    kind: Mapped[str | None] = mapped_column(Text)
    input_ids: Mapped[list[str]] = mapped_column(JSONB, nullable=False, default=list)
    output_ids: Mapped[list[str]] = mapped_column(JSONB, nullable=False, default=list)
    reasons: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, default=list)
    trace: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_agent_decisions_agent_ts", "agent", "ts"),
        Index("ix_agent_decisions_symbol_ts", "symbol", "ts"),
    )


class AuditLog(Base):
    """Operator and system actions worth keeping (kill switch, config reloads, resets)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False, comment="event time, UTC ms")
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegisteredModel(Base):
    """One version of a trained model: the file it lives in, how it was made and how well it did."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, comment="what the model is for, e.g. technical")
    version: Mapped[int] = mapped_column(Integer, nullable=False, comment="1, 2, ... per name")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False, comment="the model file")
    sha256: Mapped[str] = mapped_column(Text, nullable=False, comment="hex digest of the model file")

    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)


class OrderRow(Base):
    """The latest state of one order (its newest `OrderUpdated`), found by its client order id."""

    __tablename__ = "orders"

    client_order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    decision_id: Mapped[str] = mapped_column(Text, nullable=False)
    exchange: Mapped[str] = mapped_column(Text, nullable=False)
    symbol: Mapped[str] = mapped_column(Text, nullable=False)
    side: Mapped[str] = mapped_column(Text, nullable=False)
    order_type: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    filled_quantity: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False, comment="seq of the latest transition")
    created_ts: Mapped[int] = mapped_column(BigInteger, nullable=False, comment="event time, UTC ms")
    updated_ts: Mapped[int] = mapped_column(BigInteger, nullable=False, comment="event time, UTC ms")
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, comment="the latest OrderUpdated")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_orders_decision_id", "decision_id"),
        Index("ix_orders_exchange_status", "exchange", "status"),
    )


class OrderTransitionRow(Base):
    """One change of one order, append-only (a trigger refuses UPDATE and DELETE)."""

    __tablename__ = "order_transitions"

    client_order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False, comment="event time, UTC ms")
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text, nullable=False)
    reasons: Mapped[list[str]] = mapped_column(JSONB, nullable=False)
    event: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, comment="the OrderUpdated")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrderFillRow(Base):
    """One fill, append-only."""

    __tablename__ = "order_fills"

    trade_id: Mapped[str] = mapped_column(Text, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(Text, nullable=False)
    exchange: Mapped[str] = mapped_column(Text, nullable=False)
    symbol: Mapped[str] = mapped_column(Text, nullable=False)
    side: Mapped[str] = mapped_column(Text, nullable=False)
    price: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    fee: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    fee_asset: Mapped[str] = mapped_column(Text, nullable=False)
    liquidity: Mapped[str] = mapped_column(Text, nullable=False)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False, comment="event time, UTC ms")
    event: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, comment="the OrderFilled")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_order_fills_client_order_id", "client_order_id"),)


class LedgerEntryRow(Base):
    """One ledger entry (a transfer or a fill) of one account, append-only, in booking order."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True, comment="booking order")
    account: Mapped[str] = mapped_column(Text, nullable=False)
    entry_id: Mapped[str] = mapped_column(
        Text, nullable=False, comment="transfer:<id> or fill:<trade id>"
    )
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False, comment="event time, UTC ms")
    kind: Mapped[str] = mapped_column(Text, nullable=False, comment="transfer or fill")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (UniqueConstraint("account", "entry_id", name="uq_ledger_entries_account_entry_id"),)


class LedgerStateRow(Base):
    """The books of one account after its newest entry, for readers that do not replay."""

    __tablename__ = "ledger_state"

    account: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, comment="entries applied")
    ts: Mapped[int] = mapped_column(
        BigInteger, nullable=False, comment="event time of the newest entry, UTC ms"
    )
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, comment="Ledger.snapshot()")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ExecutionContextSnapshot(Base):
    """The orchestrator's ExecutionContext as JSON, taken every `orchestrator.snapshot_every_ms`."""

    __tablename__ = "execution_context_snapshots"
    __table_args__ = (Index("ix_execution_context_snapshots_agent_as_of", "agent", "as_of"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    agent: Mapped[str] = mapped_column(Text, nullable=False)
    as_of: Mapped[int] = mapped_column(
        BigInteger, nullable=False, comment="event time of the context, UTC ms"
    )
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def all_tables() -> MetaData:
    """`Base.metadata` with every table of the package registered: the ORM classes of a few tables live
    beside the code that owns them (users, optimiser runs) and register themselves when imported."""
    from memory import optimizer_runs, users  # noqa: F401, PLC0415 (they import this module)

    return Base.metadata
