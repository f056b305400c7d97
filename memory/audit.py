"""The audit trail: who did what, when (table `audit_log`, append-only by convention).

The ops API writes one row per sensitive action (kill switch, strategy switch, agent pause)
and per refused attempt, before or instead of publishing the command, so every command that
reached the bus has its row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memory.database import translate_errors
from memory.models import AuditLog


class AuditEntry(BaseModel):
    """One row of `audit_log`."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int | None = None
    ts: int = Field(ge=0, description="when it happened, UTC ms")
    actor: str = Field(min_length=1)
    action: str = Field(min_length=1)
    detail: dict[str, Any] | None = None


class AuditTrail:
    """Appends to and reads `audit_log` on an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, entry: AuditEntry) -> int:
        """Append `entry`; its row id."""
        values = entry.model_dump(exclude={"id"})
        async with self._begin() as conn:
            result = await conn.execute(insert(AuditLog).values(values).returning(AuditLog.id))
            return int(result.scalar_one())

    async def recent(
        self, *, limit: int = 100, actor: str | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """The newest entries first, optionally of one actor or action."""
        statement = select(AuditLog.id, AuditLog.ts, AuditLog.actor, AuditLog.action, AuditLog.detail)
        if actor is not None:
            statement = statement.where(AuditLog.actor == actor)
        if action is not None:
            statement = statement.where(AuditLog.action == action)
        statement = statement.order_by(AuditLog.id.desc()).limit(limit)
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [AuditEntry.model_validate(row._mapping) for row in rows]

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; a server that is away raises `RetriableError` (see memory.database)."""
        with translate_errors():
            async with self.engine.begin() as conn:
                yield conn
