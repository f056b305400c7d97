"""What an optimisation run leaves behind: its stored record, its candidates, and the rankings it publishes.

Pure: an `OptimizationResult` plus the data's identity in; plain rows (for memory.optimizer_runs)
and `StrategyRanked` envelopes (for the compacted `strategies.rankings` topic) out. The run id is
a uuid5 of the run's inputs (data span, costs, search settings), so the same run stored or
published twice is recognisably the same run.

Rankings: one event for every bar of the stitched out-of-sample curve (`regime` null, the
objective as configured) and one per regime the out-of-sample bars were entered in (the objective
metric within that regime's bars; trade-based objectives — profit_factor, win_rate, final_equity —
fall back to sharpe there, since a trade can span regimes). `score` is the metric itself, signed so
higher is better (a minimised metric is negated); `feasible` says whether the limits held (per
regime: the drawdown limit only).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from backtest.compare import REGIME_METRICS, regime_breakdown
from backtest.metrics import json_safe
from backtest.optimize import Objective, OptimizationResult, best
from topics.backtest import StrategyRanked
from topics.envelope import Envelope

RUN_NAMESPACE = uuid.UUID("0c7f3b52-7a51-4d1e-8f0e-6f7074696d69")  # fixed forever: run ids depend on it
SOURCE = "optimizer"


@dataclass(frozen=True)
class DataSpan:
    """Which candles a run used: the stream, the first and last open times, the bar count, the costs."""

    exchange: str
    symbol: str
    timeframe: str
    first_open_time: int
    last_close_time: int
    bars: int
    cash: str
    fee: str
    slippage_bps: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_id(span: DataSpan, settings: Mapping[str, Any]) -> str:
    """uuid5 of the data span and the run's settings (sorted JSON)."""
    text = json.dumps({"data": span.to_dict(), "settings": json_safe(dict(settings))}, sort_keys=True)
    return str(uuid.uuid5(RUN_NAMESPACE, text))


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def oos_regimes(result: OptimizationResult, regimes: pd.Series) -> dict[str, dict[str, float | int]]:
    """Per regime: the metrics of the stitched out-of-sample bars entered in it."""
    oos = result.walk_forward.out_of_sample
    return regime_breakdown(oos.equity, oos.starting, regimes, oos.position)


def run_settings(result: OptimizationResult, windows: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that, with the data, determine the run (its id hashes them)."""
    c = result.config
    return {"strategy": c.strategy, "method": c.method, "trials": c.trials, "seed": c.seed,
            "objective": c.objective.metric, "max_drawdown": c.objective.max_drawdown,
            "min_trades": c.objective.min_trades, "bounds": {k: list(v) for k, v in sorted(c.bounds.items())},
            "warmup": c.warmup, **windows}


def run_row(result: OptimizationResult, span: DataSpan, settings: Mapping[str, Any],
            regimes: Mapping[str, Any]) -> dict[str, Any]:
    """The `optimizer_runs` row of a run (JSON-safe)."""
    c = result.config
    return json_safe({
        "id": run_id(span, settings), "exchange": span.exchange, "symbol": span.symbol,
        "timeframe": span.timeframe, "strategy": c.strategy, "method": c.method,
        "objective": c.objective.metric,
        "at": span.last_close_time, "config": {**settings, "data": span.to_dict()}, "params": result.params,
        "score": _finite(result.score), "out_of_sample": result.out_of_sample,
        "in_sample": result.walk_forward.in_sample_mean(), "regimes": dict(regimes),
        "folds": [fold.to_dict() for fold in result.walk_forward.folds],
    })  # type: ignore[no-any-return]


def candidate_rows(result: OptimizationResult) -> list[dict[str, Any]]:
    """The `optimizer_candidates` rows of a run (JSON-safe), the window winners marked `chosen`."""
    rows = []
    for window, candidates in sorted(result.candidates.items()):
        winner = best(candidates).trial
        for cand in candidates:
            rows.append(json_safe({
                "window": window, "trial": cand.trial, "params": cand.params, "score": _finite(cand.score),
                "feasible": cand.feasible, "chosen": cand.trial == winner, "train_metrics": cand.metrics,
                "test_score": _finite(cand.test_score) if cand.test_score is not None else None,
                "test_metrics": cand.test_metrics, "error": cand.error,
            }))
    return rows


def ranking_events(result: OptimizationResult, span: DataSpan, settings: Mapping[str, Any],
                   regimes: Mapping[str, Mapping[str, Any]]) -> list[Envelope[StrategyRanked]]:
    """The StrategyRanked envelopes of a run: overall first, then one per regime, timed at the data's end."""
    c = result.config
    ident = run_id(span, settings)
    overall = result.out_of_sample
    raw = Objective(c.objective.metric, None, 0)  # the score itself; the limits only set `feasible`
    events = [_ranked(span, c.strategy, result.params, regime=None, metric=c.objective.metric,
                      score=raw.score(overall)[0], feasible=c.objective.score(overall)[1],
                      bars=int(overall["bars"]), out_of_sample=overall,
                      in_sample=result.walk_forward.in_sample_mean(), ident=ident)]
    metric = c.objective.metric if c.objective.metric in REGIME_METRICS else "sharpe"
    per_regime, limits = Objective(metric, None, 0), Objective(metric, c.objective.max_drawdown, 0)
    for regime, metrics in regimes.items():
        events.append(_ranked(span, c.strategy, result.params, regime=regime, metric=metric,
                              score=per_regime.score(metrics)[0], feasible=limits.score(metrics)[1],
                              bars=int(metrics["bars"]), out_of_sample=metrics, in_sample={}, ident=ident))
    return [Envelope.create(event, key=event.key, ts=span.last_close_time, source=SOURCE,
                            discriminator=ident) for event in events]


def _ranked(span: DataSpan, strategy: str, params: Mapping[str, Any], *, regime: str | None, metric: str,
            score: float, feasible: bool, bars: int, out_of_sample: Mapping[str, Any],
            in_sample: Mapping[str, Any], ident: str) -> StrategyRanked:
    return StrategyRanked(
        exchange=span.exchange, symbol=span.symbol, timeframe=span.timeframe, strategy=strategy,
        params=json_safe(dict(params)), regime=regime, metric=metric,  # type: ignore[arg-type]
        score=_finite(score), feasible=feasible, bars=bars,
        out_of_sample={k: _finite(v) for k, v in out_of_sample.items()},
        in_sample={k: _finite(v) for k, v in in_sample.items()}, run_id=ident, at=span.last_close_time,
    )
