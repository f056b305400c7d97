"""Snapshots of the orchestrator's ExecutionContext in Postgres: history, and recovery without Redis.

The context is stored as JSON exactly as `ExecutionContext.to_json()` wrote it; this module does not
know its shape (memory sits below orchestrator), so callers validate what `latest` returns.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.database import translate_errors
from memory.models import ExecutionContextSnapshot


class ContextSnapshots:
    """Writes and reads `execution_context_snapshots` on an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(self, agent: str, as_of: int, context_json: bytes) -> None:
        """Store one snapshot of `agent`'s context as of event time `as_of`."""
        row = {"agent": agent, "as_of": as_of, "context": orjson.loads(context_json)}
        with translate_errors():
            async with self.engine.begin() as conn:
                await conn.execute(insert(ExecutionContextSnapshot).values(row))

    async def latest(self, agent: str) -> tuple[int, dict[str, Any]] | None:
        """(as_of, context) of the snapshot `agent` wrote last, or None if it never took one."""
        statement = (select(ExecutionContextSnapshot.as_of, ExecutionContextSnapshot.context)
                     .where(ExecutionContextSnapshot.agent == agent)
                     .order_by(ExecutionContextSnapshot.id.desc())
                     .limit(1))
        with translate_errors():
            async with self.engine.begin() as conn:
                row = (await conn.execute(statement)).first()
        return (row.as_of, row.context) if row is not None else None
