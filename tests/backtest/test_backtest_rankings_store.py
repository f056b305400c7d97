"""Optimisation runs: their rows and ranking events (pure), stored in and read back from real Postgres."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
from analytics_data import random_walk_candles, toy_run
from sqlalchemy.ext.asyncio import AsyncEngine

from backtest.compare import regimes_for
from backtest.optimize import Objective, OptimizationResult, OptimizeConfig, optimize_walk_forward
from backtest.rankings import (
    DataSpan,
    candidate_rows,
    oos_regimes,
    ranking_events,
    run_id,
    run_row,
    run_settings,
)
from backtest.runner import Runner
from backtest.walkforward import walk_forward_windows
from memory.optimizer_runs import OptimizerCandidate, OptimizerRun, OptimizerRunStore
from topics.backtest import StrategyRanked
from topics.registry import REGISTRY, STRATEGIES_RANKINGS
from topics.serialization import decode, encode

WINDOWS = {"train_bars": 300, "test_bars": 150, "anchored": False}


@pytest.fixture(scope="module")
def run() -> tuple[OptimizationResult, pd.DataFrame, DataSpan]:
    candles = random_walk_candles(900, seed=21, drift=0.0002)
    runner = Runner(candles, "BTC/USDT", Decimal(10_000), Decimal("0.001"), run=toy_run)
    config = OptimizeConfig(
        "sma_cross", "ga", 6, 3, Objective("sharpe", 0.5), {"fast": (2, 20), "slow": (10, 60)}, 60
    )
    result = optimize_walk_forward(runner, walk_forward_windows(900, 300, 150), config)
    span = DataSpan(
        "binance",
        "BTC/USDT",
        "1h",
        int(candles["open_time"].iloc[0]),
        int(candles["open_time"].iloc[-1]) + 3_600_000,
        900,
        "10000",
        "0.001",
        "0",
    )
    return result, candles, span


def test_rows_and_events_describe_the_out_of_sample_result(
    run: tuple[OptimizationResult, pd.DataFrame, DataSpan],
) -> None:
    result, candles, span = run
    index = pd.DatetimeIndex(pd.to_datetime(candles["open_time"], unit="ms", utc=True))
    regimes = oos_regimes(result, regimes_for(candles, index))
    assert sum(m["bars"] for m in regimes.values()) == len(result.walk_forward.out_of_sample.equity)
    settings = run_settings(result, WINDOWS)
    row = run_row(result, span, settings, regimes)
    assert row["id"] == run_id(span, settings) == run_row(result, span, settings, regimes)["id"]
    assert row["id"] != run_id(span, {**settings, "seed": 4})  # other inputs, another run
    assert row["params"] == result.params
    assert row["at"] == span.last_close_time
    rows = candidate_rows(result)
    assert len(rows) == 6 * len(result.walk_forward.folds)
    assert sum(r["chosen"] for r in rows) == len(result.walk_forward.folds)
    events = ranking_events(result, span, settings, regimes)
    overall = events[0].payload
    assert overall.regime is None
    assert overall.metric == "sharpe"
    assert overall.score == pytest.approx(result.out_of_sample["sharpe"])
    assert overall.bars == 900 - 300
    assert overall.run_id == row["id"]
    assert [e.payload.regime for e in events[1:]] == list(regimes)
    assert events[0].key == "binance:BTC/USDT:1h:all:sma_cross"
    assert REGISTRY.topic_of(StrategyRanked) is STRATEGIES_RANKINGS
    assert STRATEGIES_RANKINGS.compacted
    for envelope in events:
        assert decode(STRATEGIES_RANKINGS, encode(envelope)) == envelope
        assert envelope.ts == span.last_close_time
    assert len({e.event_id for e in events}) == len(events)


async def test_a_run_and_its_candidates_are_stored_read_back_and_replaced_not_duplicated(
    engine: AsyncEngine,
    run: tuple[OptimizationResult, pd.DataFrame, DataSpan],
) -> None:
    result, _, span = run
    settings = run_settings(result, WINDOWS)
    row = run_row(result, span, settings, {"bull": {"bars": 10, "sharpe": None}})
    store = OptimizerRunStore(engine)
    candidates = [OptimizerCandidate(**r) for r in candidate_rows(result)]
    await store.save(OptimizerRun(**row), candidates)
    await store.save(OptimizerRun(**row), candidates)  # the same run again: replaced
    stored = await store.get(row["id"])
    assert stored is not None
    assert stored.params == result.params
    assert stored.regimes == {"bull": {"bars": 10, "sharpe": None}}
    assert stored.created_at is not None
    back = await store.candidates(row["id"])
    assert len(back) == len(candidates)
    assert [(c.window, c.trial) for c in back] == sorted((c.window, c.trial) for c in candidates)
    assert back[0].train_metrics == candidates[0].train_metrics
    latest = await store.latest(strategy="sma_cross", symbol="BTC/USDT")
    assert [r.id for r in latest] == [row["id"]]
    assert await store.get("missing") is None
    assert await store.latest(strategy="trend") == []


async def test_the_optimizer_tables_match_their_migration(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from memory.models import Base

    async with engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    ours = [d for d in differences if "optimizer_" in repr(d)]
    assert ours == []
