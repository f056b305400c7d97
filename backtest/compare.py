"""Several strategies (or parameter sets) on the same data: one table, ranked, broken down by regime.

Regimes come from the orchestrator's rule detector (`orchestrator.regime`: the same features,
`RuleBasedDetector` and `Hysteresis` as the live MarketConditionDetector without a forest), so a
bar's regime is the confirmed one at that bar's close, "unknown" while the detector warms up. A
bar's return is attributed to the regime confirmed at the previous close: what the orchestrator
knew when it chose what to run over that bar. Per regime, the metrics are those of the curve made
of that regime's bar returns only, compounded from the starting cash (annualised at the data's
bar interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backtest.metrics import (
    compute_metrics,
    json_safe,
    periods_per_year,
    rank_key,
    result_metrics,
    returns_of,
)
from orchestrator.regime import Hysteresis, RuleBasedDetector, feature_matrix
from strategies import STRATEGIES

UNKNOWN = "unknown"
REGIME_ORDER = ("bull", "bear", "neutral", "high_volatility", UNKNOWN)
REGIME_METRICS = ("bars", "share", "total_return", "cagr", "sharpe", "sortino", "calmar", "volatility",
                  "max_drawdown", "exposure")


def label_of(strategy: str, params: Mapping[str, Any]) -> str:
    """`name(key=value, ...)` with only the parameters that differ from the strategy's defaults."""
    cls = STRATEGIES.get(strategy)
    defaults = {p.name: p.default for p in cls.space} if cls is not None else {}
    changed = [f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
               for key, value in params.items() if defaults.get(key) != value]
    return f"{strategy}({', '.join(changed)})" if changed else strategy


def detect_regimes(candles: pd.DataFrame) -> np.ndarray:
    """The confirmed regime at each candle's close (rules + hysteresis), "unknown" before the first."""
    features = feature_matrix(candles)
    rules = RuleBasedDetector()
    hysteresis = Hysteresis()
    out = []
    for row in features.tolist():
        if all(map(math.isfinite, row)):
            hysteresis.step(rules.classify(row)[0])
        out.append(hysteresis.regime or UNKNOWN)
    return np.asarray(out, dtype=object)


def regimes_for(candles: pd.DataFrame, index: pd.Index) -> pd.Series:
    """The regime each bar of `index` (a backtest's equity index over the last len(index) candles) was
    entered in: the regime confirmed at the previous candle's close."""
    regimes = detect_regimes(candles)
    entered = np.concatenate([[UNKNOWN], regimes[:-1]]).astype(object)
    if len(index) > len(entered):
        raise ValueError(f"{len(index)} bars but only {len(entered)} candles to detect regimes on")
    return pd.Series(entered[len(entered) - len(index):], index=index, name="regime")


def regime_breakdown(equity: pd.Series, starting: float, regimes: pd.Series,
                     position: pd.Series | None = None) -> dict[str, dict[str, float | int]]:
    """Per regime present: REGIME_METRICS of the curve made of that regime's bar returns only (`share`:
    of all bars). Trade metrics are not split by regime: a trade can span regimes."""
    returns = returns_of(equity, starting)
    labels = regimes.reindex(returns.index).fillna(UNKNOWN)
    ppy = periods_per_year(equity.index)
    out: dict[str, dict[str, float | int]] = {}
    for regime in REGIME_ORDER:
        mask = (labels == regime).to_numpy()
        if not mask.any():
            continue
        part = returns[mask]
        curve = starting * (1.0 + part).cumprod()
        held = position[mask] if position is not None else None
        m = compute_metrics(curve, starting_cash=starting, position=held, periods=ppy)
        m.update(bars=int(mask.sum()), share=float(mask.mean()))
        out[regime] = {key: m[key] for key in REGIME_METRICS}
    return out


@dataclass(frozen=True)
class Entry:
    """One strategy of a comparison: its label, result, metrics and regime breakdown."""

    label: str
    result: Any
    metrics: dict[str, float | int]
    regimes: dict[str, dict[str, float | int]]


@dataclass(frozen=True)
class Comparison:
    """Entries ranked best first by `rank_by`."""

    rank_by: str
    entries: list[Entry]

    def table(self, keys: Sequence[str]) -> pd.DataFrame:
        """Rows = entries in rank order, columns = `keys` metrics."""
        return pd.DataFrame([{k: e.metrics[k] for k in keys} for e in self.entries],
                            index=[e.label for e in self.entries])

    def regime_table(self, metric: str) -> pd.DataFrame:
        """Rows = entries, columns = regimes: `metric` within each regime (NaN where absent)."""
        present = [r for r in REGIME_ORDER if any(r in e.regimes for e in self.entries)]
        return pd.DataFrame([{r: e.regimes.get(r, {}).get(metric, math.nan) for r in present}
                             for e in self.entries], index=[e.label for e in self.entries])

    def best_per_regime(self, metric: str) -> dict[str, str]:
        """regime -> the label of the entry with the best `metric` in it."""
        out = {}
        for regime in REGIME_ORDER:
            scored = [(e.regimes[regime][metric], e.label) for e in self.entries if regime in e.regimes]
            if scored:
                out[regime] = min(scored, key=lambda item: rank_key(metric, float(item[0])))[1]
        return out

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "rank_by": self.rank_by,
            "ranking": [{"rank": i + 1, "label": e.label, "strategy": e.result.strategy,
                         "params": dict(e.result.params), "metrics": e.metrics, "regimes": e.regimes}
                        for i, e in enumerate(self.entries)],
            "best_per_regime": self.best_per_regime(self.rank_by if self.rank_by in REGIME_METRICS
                                                    else "sharpe"),
        })


def compare(results: Sequence[Any], *, rank_by: str = "sharpe", regimes: pd.Series | None = None,
            labels: Sequence[str] | None = None) -> Comparison:
    """Rank backtest results of the same data by `rank_by` (a metrics key), with regime breakdowns."""
    if not results:
        raise ValueError("nothing to compare: no results")
    names = list(labels) if labels is not None else [label_of(r.strategy, r.params) for r in results]
    seen: dict[str, int] = {}
    entries = []
    for name, result in zip(names, results, strict=True):
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name} #{seen[name]}"
        metrics = result_metrics(result)
        if rank_by not in metrics:
            raise ValueError(f"cannot rank by {rank_by!r}; metrics are {', '.join(metrics)}")
        breakdown = (regime_breakdown(result.equity, float(result.starting_cash), regimes, result.position)
                     if regimes is not None else {})
        entries.append(Entry(label, result, metrics, breakdown))
    entries.sort(key=lambda e: rank_key(rank_by, float(e.metrics[rank_by])))
    return Comparison(rank_by, entries)
