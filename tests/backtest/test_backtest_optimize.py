"""The optimiser: TPE and the GA find a known optimum; on data, every candidate is scored walk-forward."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from analytics_data import random_walk_candles, toy_run

from backtest.optimize import (
    INFEASIBLE,
    INVALID,
    Candidate,
    Objective,
    OptimizeConfig,
    best,
    narrow,
    optimize_walk_forward,
    search,
)
from backtest.runner import Runner
from backtest.walkforward import walk_forward_windows
from strategies.base import Param

SPACE = (Param("x", "int", 3, 0, 30), Param("y", "float", 0.5, 0.0, 1.0), Param("flag", "bool", False))


def synthetic(params: dict[str, Any]) -> Candidate:
    value = -((params["x"] - 13) ** 2) - 40 * (params["y"] - 0.8) ** 2 + (2 if params["flag"] else 0)
    return Candidate(-1, params, float(value), True)


@pytest.mark.parametrize("method", ["tpe", "ga"])
def test_each_method_finds_the_optimum_of_a_synthetic_objective(method: str) -> None:
    tried = search(SPACE, synthetic, method=method, trials=120, seed=1)  # type: ignore[arg-type]
    assert len(tried) == 120
    assert [c.trial for c in tried] == list(range(120))
    assert tried[0].params == {"x": 3, "y": 0.5, "flag": False}  # the defaults go first
    winner = best(tried)
    assert winner.params["flag"] is True
    assert abs(winner.params["x"] - 13) <= 1
    assert abs(winner.params["y"] - 0.8) < 0.15
    again = search(SPACE, synthetic, method=method, trials=120, seed=1)  # type: ignore[arg-type]
    assert [c.params for c in again] == [c.params for c in tried]  # seeded: reproducible


def test_objective_limits_make_a_candidate_infeasible_below_every_feasible_one() -> None:
    objective = Objective("sharpe", max_drawdown=0.2, min_trades=2)
    assert objective.score({"sharpe": 1.5, "max_drawdown": 0.1, "trades": 3}) == (1.5, True)
    score, feasible = objective.score({"sharpe": 9.0, "max_drawdown": 0.3, "trades": 3})
    assert not feasible
    assert score == pytest.approx(INFEASIBLE - 0.1)
    assert objective.score({"sharpe": 9.0, "max_drawdown": 0.1, "trades": 0})[1] is False
    assert Objective("max_drawdown", None).score({"max_drawdown": 0.1, "trades": 0}) == (-0.1, True)
    with pytest.raises(ValueError, match="not one of"):
        Objective("luck")


def test_narrowing_the_space_stays_inside_the_declared_bounds() -> None:
    narrowed = narrow(SPACE, {"x": (5, 10)})
    assert (narrowed[0].low, narrowed[0].high) == (5, 10)
    with pytest.raises(ValueError, match="within its declared bounds"):
        narrow(SPACE, {"x": (5, 50)})
    with pytest.raises(ValueError, match="unknown parameter"):
        narrow(SPACE, {"z": (1, 2)})


@pytest.mark.parametrize("method", ["tpe", "ga"])
def test_walk_forward_optimisation_scores_every_candidate_out_of_sample(method: str) -> None:
    candles = random_walk_candles(900, seed=11, drift=0.0003)
    runner = Runner(candles, "BTC/USDT", Decimal(10_000), Decimal("0.001"), run=toy_run)
    windows = walk_forward_windows(len(candles), 300, 150)
    config = OptimizeConfig("sma_cross", method=method, trials=8, seed=4,  # type: ignore[arg-type]
                            objective=Objective("sharpe", max_drawdown=0.5),
                            bounds={"fast": (2, 20), "slow": (10, 60)}, warmup=60)
    seen: list[int] = []
    result = optimize_walk_forward(runner, windows, config, progress=lambda w, c: seen.append(w.index))
    assert len(seen) == 8 * len(windows)
    for fold in result.walk_forward.folds:
        tried = result.candidates[fold.window.index]
        assert len(tried) == 8
        valid = [c for c in tried if c.score > INVALID]
        assert all(c.test_metrics is not None and c.test_score is not None for c in valid)
        assert fold.params == best(tried).params
        assert fold.train.metrics()["sharpe"] == pytest.approx(best(tried).metrics["sharpe"])
    assert result.params == result.walk_forward.folds[-1].params
    assert result.score == pytest.approx(config.objective.score(result.out_of_sample)[0])
    report = result.to_dict()
    assert report["params"] == result.params
    assert len(report["candidates"]) == len(windows)


@pytest.mark.parametrize("method", ["tpe", "ga"])
def test_on_real_candles_through_the_engine_the_winner_is_scored_out_of_sample(method: str) -> None:
    from agents.market_data.files import bundled_candles, read_candles

    source = next(s for s in bundled_candles() if s.symbol == "ETH/USDT")
    candles = read_candles(source.path, symbol="ETH/USDT", timeframe="1h").iloc[-700:].reset_index(drop=True)
    runner = Runner(candles, "ETH/USDT", Decimal(10_000), Decimal("0.001"))  # the real engine
    windows = walk_forward_windows(len(candles), 300, 200)
    config = OptimizeConfig("sma_cross", method=method, trials=5, seed=0,  # type: ignore[arg-type]
                            bounds={"fast": (3, 30), "slow": (10, 90)}, warmup=50)
    result = optimize_walk_forward(runner, windows, config)
    oos = result.walk_forward.out_of_sample
    assert len(oos.equity) == 400  # the two test windows, nothing of the first train window
    assert oos.equity.index[0] == pd.Timestamp(int(candles["open_time"].iloc[300]), unit="ms", tz="UTC")
    for fold in result.walk_forward.folds:
        winner = best(result.candidates[fold.window.index])
        assert fold.params == winner.params
        assert fold.test.metrics()["sharpe"] == pytest.approx(winner.test_metrics["sharpe"])  # type: ignore[index]
    assert result.score == pytest.approx(config.objective.score(oos.metrics())[0])
