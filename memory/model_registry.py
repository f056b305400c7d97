"""The model registry: which trained model files exist, in which version, made how, scoring what.

A model is a file (written by whoever trained it) plus a row in `models`: name, version (1, 2,
... per name, assigned here), parameters, metrics, path and the file's sha256, so a loader can
refuse a file that changed. Agents load the latest version of the name they are configured for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memory.database import translate_errors
from memory.models import RegisteredModel

# The advisory lock that serialises version numbering (any fixed number; "MODELS" in ASCII).
_LOCK_KEY = 0x4D4F44454C53


class ModelRecord(BaseModel):
    """One row of `models`."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    name: str = Field(min_length=1)
    version: int = Field(ge=1)
    created_at: datetime
    params: dict[str, Any]
    metrics: dict[str, Any]
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelRegistry:
    """Registers and finds model versions on an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def register(
        self, name: str, *, path: str, sha256: str, params: dict[str, Any], metrics: dict[str, Any],
    ) -> ModelRecord:
        """Store a new version of `name` (the previous latest + 1) and return its row."""
        async with self._begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            newest = select(func.coalesce(func.max(RegisteredModel.version), 0))
            latest = (await conn.execute(newest.where(RegisteredModel.name == name))).scalar_one()
            statement = insert(RegisteredModel).values(
                name=name, version=latest + 1, params=params, metrics=metrics, path=path, sha256=sha256,
            ).returning(*RegisteredModel.__table__.columns)
            row = (await conn.execute(statement)).one()
        return ModelRecord.model_validate(row._mapping)

    async def latest(self, name: str) -> ModelRecord | None:
        """The newest version of `name`, or None if none was registered."""
        statement = self._select(name).order_by(RegisteredModel.version.desc()).limit(1)
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return None if row is None else ModelRecord.model_validate(row._mapping)

    async def get(self, name: str, version: int) -> ModelRecord | None:
        """Version `version` of `name`, or None."""
        statement = self._select(name).where(RegisteredModel.version == version)
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return None if row is None else ModelRecord.model_validate(row._mapping)

    async def versions(self, name: str) -> list[ModelRecord]:
        """Every version of `name`, oldest first."""
        async with self._begin() as conn:
            rows = (await conn.execute(self._select(name).order_by(RegisteredModel.version))).all()
        return [ModelRecord.model_validate(row._mapping) for row in rows]

    @staticmethod
    def _select(name: str) -> Any:
        return select(*RegisteredModel.__table__.columns).where(RegisteredModel.name == name)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; a server that is away raises `RetriableError` (see memory.database)."""
        with translate_errors():
            async with self.engine.begin() as conn:
                yield conn
