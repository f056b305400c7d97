"""The ledger in Postgres: each account's entries (append-only) and its books after the newest one.

Entries are records as `execution.ledger.entry_record` makes them (memory may not import
execution): an id, a kind, an event time and a JSON payload. Appending is idempotent on
(account, entry id), and the state is written in the same transaction as the entries it
reflects, and only if it is newer (a higher version) than the stored one — so a crash between
the two can never leave them disagreeing, and a replay changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memory.database import translate_errors
from memory.models import LedgerEntryRow, LedgerStateRow
from memory.orders import chunked


class LedgerRecord(BaseModel):
    """One stored ledger entry."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    entry_id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    ts: int = Field(ge=0, description="event time, UTC ms")
    payload: dict[str, Any]


class LedgerState(BaseModel):
    """An account's books as last stored."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    version: int = Field(ge=0, description="entries applied")
    ts: int = Field(ge=0)
    state: dict[str, Any]


class LedgerStore:
    """Reads and writes `ledger_entries` and `ledger_state` on an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def append(
        self, account: str, entries: Iterable[LedgerRecord], *, state: LedgerState | None = None
    ) -> int:
        """Store the entries not stored yet and, if given and newer, the state; how many were new."""
        rows = [{"account": account, **entry.model_dump()} for entry in entries]
        new = 0
        async with self._begin() as conn:
            for chunk in chunked(rows):
                statement = insert(LedgerEntryRow).values(chunk).on_conflict_do_nothing(
                    index_elements=["account", "entry_id"]
                )
                new += len((await conn.execute(statement.returning(LedgerEntryRow.id))).all())
            if state is not None:
                upsert = insert(LedgerStateRow).values(account=account, **state.model_dump())
                await conn.execute(upsert.on_conflict_do_update(
                    index_elements=["account"],
                    set_={name: upsert.excluded[name] for name in ("version", "ts", "state", "updated_at")},
                    where=LedgerStateRow.version < upsert.excluded.version,
                ))
        return new

    async def entries(self, account: str) -> list[LedgerRecord]:
        """The account's entries in the order they were booked."""
        statement = (
            select(LedgerEntryRow.entry_id, LedgerEntryRow.kind, LedgerEntryRow.ts, LedgerEntryRow.payload)
            .where(LedgerEntryRow.account == account)
            .order_by(LedgerEntryRow.id)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [LedgerRecord.model_validate(row._mapping) for row in rows]

    async def state(self, account: str) -> LedgerState | None:
        """The account's books as last stored, or None."""
        statement = select(LedgerStateRow.version, LedgerStateRow.ts, LedgerStateRow.state).where(
            LedgerStateRow.account == account
        )
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return None if row is None else LedgerState.model_validate(row._mapping)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; a server that is away raises `RetriableError` (see memory.database)."""
        with translate_errors():
            async with self.engine.begin() as conn:
                yield conn
