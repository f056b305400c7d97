"""The tables of agent history. Alembic migrations (memory/migrations) create and evolve them.

Event times are BIGINT UTC milliseconds, as on the wire, so a row compares with the event that
produced it without time-zone conversions; `created_at` is only when the row was written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Text, func
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
