"""Optimisation runs and every candidate they tried (tables `optimizer_runs`, `optimizer_candidates`).

A run is one `cryptiq optimize`: strategy, instrument, search method, objective and windows, the
recommended parameters, the stitched out-of-sample metrics beside the in-sample ones, the
per-regime out-of-sample metrics and the folds. A candidate is one parameter set tried on one
walk-forward window, with its train (in-sample) and test (out-of-sample) scores. The run id is
derived from the run's inputs, so storing the same run again replaces it (one transaction)
instead of adding a copy. Numbers arrive JSON-safe (non-finite as null).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from memory.database import translate_errors
from memory.models import Base


class OptimizerRunRow(Base):
    """One optimisation run and what it concluded."""

    __tablename__ = "optimizer_runs"

    id: Mapped[str] = mapped_column(Text, primary_key=True, comment="uuid5 of the run's inputs")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 nullable=False)
    exchange: Mapped[str] = mapped_column(Text, nullable=False)
    symbol: Mapped[str] = mapped_column(Text, nullable=False)
    timeframe: Mapped[str] = mapped_column(Text, nullable=False)
    strategy: Mapped[str] = mapped_column(Text, nullable=False)
    method: Mapped[str] = mapped_column(Text, nullable=False, comment="tpe or ga")
    objective: Mapped[str] = mapped_column(Text, nullable=False, comment="the metric scored, e.g. sharpe")
    at: Mapped[int] = mapped_column(BigInteger, nullable=False,
                                    comment="close of the last candle used, UTC ms")
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, comment="recommended parameters")
    score: Mapped[float | None] = mapped_column(Float,
                                                comment="objective of the stitched out-of-sample curve")
    out_of_sample: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    in_sample: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    regimes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, comment="out-of-sample per regime")
    folds: Mapped[list[Any]] = mapped_column(JSONB, nullable=False)

    __table_args__ = (Index("ix_optimizer_runs_strategy_symbol_at", "strategy", "symbol", "at"),)


class OptimizerCandidateRow(Base):
    """One parameter set tried on one walk-forward window."""

    __tablename__ = "optimizer_candidates"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(Text, ForeignKey("optimizer_runs.id", ondelete="CASCADE"),
                                        nullable=False)
    window: Mapped[int] = mapped_column(Integer, nullable=False)
    trial: Mapped[int] = mapped_column(Integer, nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    score: Mapped[float | None] = mapped_column(Float, comment="objective on the train window (in sample)")
    feasible: Mapped[bool] = mapped_column(Boolean, nullable=False)
    chosen: Mapped[bool] = mapped_column(Boolean, nullable=False, comment="the window's winner")
    train_metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    test_score: Mapped[float | None] = mapped_column(Float, comment="objective on the test window")
    test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text, comment="why the parameters were invalid")

    __table_args__ = (UniqueConstraint("run_id", "window", "trial", name="uq_optimizer_candidates_trial"),)


class OptimizerRun(BaseModel):
    """One row of `optimizer_runs` (created_at is filled in by the database)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str = Field(min_length=1)
    exchange: str
    symbol: str
    timeframe: str
    strategy: str
    method: str
    objective: str
    at: int = Field(ge=0)
    config: dict[str, Any]
    params: dict[str, Any]
    score: float | None
    out_of_sample: dict[str, Any]
    in_sample: dict[str, Any]
    regimes: dict[str, Any]
    folds: list[Any]
    created_at: datetime | None = None


class OptimizerCandidate(BaseModel):
    """One row of `optimizer_candidates`."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    window: int = Field(ge=0)
    trial: int = Field(ge=0)
    params: dict[str, Any]
    score: float | None
    feasible: bool
    chosen: bool
    train_metrics: dict[str, Any]
    test_score: float | None = None
    test_metrics: dict[str, Any] | None = None
    error: str | None = None


_RUN_COLUMNS = list(OptimizerRunRow.__table__.columns)
_CANDIDATE_FIELDS = list(OptimizerCandidate.model_fields)


class OptimizerRunStore:
    """Stores and reads optimisation runs on an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(self, run: OptimizerRun, candidates: Sequence[OptimizerCandidate]) -> None:
        """Store `run` and its candidates, replacing a run stored before under the same id."""
        values = run.model_dump(exclude={"created_at"})
        async with self._begin() as conn:
            await conn.execute(delete(OptimizerRunRow).where(OptimizerRunRow.id == run.id))
            await conn.execute(insert(OptimizerRunRow).values(**values))
            if candidates:
                await conn.execute(insert(OptimizerCandidateRow), [
                    {"run_id": run.id, **candidate.model_dump()} for candidate in candidates
                ])

    async def get(self, run_id: str) -> OptimizerRun | None:
        """The run stored under `run_id`, or None."""
        async with self._begin() as conn:
            row = (await conn.execute(select(*_RUN_COLUMNS).where(OptimizerRunRow.id == run_id))).first()
        return None if row is None else OptimizerRun.model_validate(row._mapping)

    async def candidates(self, run_id: str) -> list[OptimizerCandidate]:
        """The run's candidates by window, then trial."""
        columns = [getattr(OptimizerCandidateRow, name) for name in _CANDIDATE_FIELDS]
        statement = (select(*columns).where(OptimizerCandidateRow.run_id == run_id)
                     .order_by(OptimizerCandidateRow.window, OptimizerCandidateRow.trial))
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [OptimizerCandidate.model_validate(row._mapping) for row in rows]

    async def latest(self, *, strategy: str | None = None, symbol: str | None = None,
                     limit: int = 20) -> list[OptimizerRun]:
        """The newest runs (by the data's event time, then storage time), of one strategy/symbol if given."""
        statement = select(*_RUN_COLUMNS)
        if strategy is not None:
            statement = statement.where(OptimizerRunRow.strategy == strategy)
        if symbol is not None:
            statement = statement.where(OptimizerRunRow.symbol == symbol)
        statement = statement.order_by(OptimizerRunRow.at.desc(), OptimizerRunRow.created_at.desc())
        statement = statement.limit(limit)
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [OptimizerRun.model_validate(row._mapping) for row in rows]

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; a server that is away raises `RetriableError` (see memory.database)."""
        with translate_errors():
            async with self.engine.begin() as conn:
                yield conn
