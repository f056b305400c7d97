"""Performance metrics of an equity curve and its trades: pure functions, float analytics.

Conventions (each one is a choice; the README repeats them):
- returns are simple per-bar returns of the equity marked at each bar close; the first bar's
  return is measured from `starting_cash` when given (the account before the first bar);
- annualisation uses the bar interval: `periods_per_year` = 365 days / the median spacing of
  the index (crypto trades every day), so 1h bars give 8,760 periods;
- the risk-free rate is 0: Sharpe = mean / stdev (ddof 1) x sqrt(periods per year); Sortino uses
  the downside deviation sqrt(mean(min(r, 0)^2)) over every bar;
- drawdown is the fraction below the running peak (the peak includes `starting_cash`), so
  `max_drawdown` is positive (0.25 = 25 % below the peak). Its duration is the episode holding
  the deepest point, from its peak to the first bar back at that peak (or the last bar if it
  never recovered); `longest_drawdown` is the longest such episode of any depth;
- Calmar = CAGR / max drawdown; profit factor = gross profit / gross loss of closed trades (P/L
  net of fees); win rate = closed trades with P/L > 0 / closed trades;
- exposure = share of bars ending with a non-zero position; turnover = traded notional (every
  entry and exit fill) / mean equity.
Undefined ratios (a zero denominator) are +/-inf or 0 as the sign dictates, and `json_safe`
turns non-finite numbers into null for reports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pandas as pd

YEAR_S = 365 * 24 * 3600
METRIC_KEYS = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_duration_bars", "max_drawdown_duration_days", "longest_drawdown_bars",
    "longest_drawdown_days", "win_rate", "profit_factor", "exposure", "turnover", "fees_paid", "trades",
    "closed_trades", "avg_trade_pnl", "starting_equity", "final_equity", "bars", "periods_per_year",
)
HIGHER_IS_BETTER = {
    "total_return": True, "cagr": True, "volatility": False, "sharpe": True, "sortino": True, "calmar": True,
    "max_drawdown": False, "max_drawdown_duration_days": False, "longest_drawdown_days": False,
    "win_rate": True, "profit_factor": True, "exposure": False, "turnover": False, "fees_paid": False,
    "final_equity": True, "avg_trade_pnl": True,
}


class TradeLike(Protocol):
    """What the metrics read of a round trip (backtest.result.Trade satisfies it)."""

    @property
    def exit_time(self) -> int | None: ...
    @property
    def entry_price(self) -> Decimal: ...
    @property
    def exit_price(self) -> Decimal | None: ...
    @property
    def size(self) -> Decimal: ...
    @property
    def pnl(self) -> Decimal: ...


def periods_per_year(index: pd.Index) -> float:
    """Bars per year from the median spacing of a DatetimeIndex (1h -> 8760); NaN with < 2 bars."""
    if len(index) < 2:
        return math.nan
    steps = np.diff(pd.DatetimeIndex(index).as_unit("ns").asi8)  # pandas 3 defaults to microseconds
    step_s = float(np.median(steps)) / 1e9
    return YEAR_S / step_s if step_s > 0 else math.nan


def returns_of(equity: pd.Series, starting: float | None = None) -> pd.Series:
    """Simple per-bar returns; the first is from `starting` when given, else the first bar has none."""
    values = equity.astype(float)
    previous = values.shift(1)
    if starting is not None and len(values):
        previous.iloc[0] = float(starting)
        return values / previous - 1.0
    return (values / previous - 1.0).iloc[1:]


def drawdown_of(equity: pd.Series, starting: float | None = None) -> pd.Series:
    """Fraction below the running peak at each bar (0 at a new high), the peak including `starting`."""
    values = equity.astype(float)
    peak = values.cummax()
    if starting is not None:
        peak = peak.clip(lower=float(starting))
    return 1.0 - values / peak


def _episodes(drawdown: np.ndarray) -> list[tuple[int, int, float]]:
    """(peak position, end position, depth) of each run below the peak; `peak` is the bar before the
    run (-1: the starting cash), `end` the first bar back at the peak or the last bar."""
    episodes = []
    start = None
    depth = 0.0
    for i, value in enumerate(drawdown.tolist()):
        if value > 1e-12:
            if start is None:
                start, depth = i - 1, 0.0
            depth = max(depth, value)
        elif start is not None:
            episodes.append((start, i, depth))
            start = None
    if start is not None:
        episodes.append((start, len(drawdown) - 1, depth))
    return episodes


def _ratio(numerator: float, denominator: float) -> float:
    if denominator > 0:
        return numerator / denominator
    if numerator == 0 or math.isnan(numerator):
        return 0.0
    return math.copysign(math.inf, numerator)


def compute_metrics(
    equity: pd.Series, *, starting_cash: float | Decimal | None = None, trades: Sequence[TradeLike] = (),
    position: pd.Series | None = None, fees_paid: float | Decimal = 0.0, periods: float | None = None,
) -> dict[str, float | int]:
    """Every metric of METRIC_KEYS for an equity curve (UTC DatetimeIndex) and its trades."""
    starting = float(starting_cash) if starting_cash is not None else None
    values = equity.astype(float)
    ppy = periods if periods is not None else periods_per_year(values.index)
    returns = returns_of(values, starting).to_numpy()
    base = starting if starting is not None else (float(values.iloc[0]) if len(values) else math.nan)
    final = float(values.iloc[-1]) if len(values) else base
    total_return = final / base - 1.0 if base else math.nan
    years = len(returns) / ppy if ppy and ppy > 0 else math.nan
    if final <= 0:
        cagr = -1.0
    elif years > 0:
        growth = math.log(final / base) / years
        cagr = math.exp(growth) - 1.0 if growth < 700 else math.inf  # a few bars annualised can overflow
    else:
        cagr = math.nan
    if len(returns) >= 2:
        mean, std = float(np.mean(returns)), float(np.std(returns, ddof=1))
        std = 0.0 if std < 1e-15 else std  # a constant series: float noise is not risk
        volatility = std * math.sqrt(ppy)
        sharpe = _ratio(mean, std) * math.sqrt(ppy)
        downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
        sortino = _ratio(mean, downside) * math.sqrt(ppy)
    else:
        volatility = sharpe = sortino = math.nan
    drawdown = drawdown_of(values, starting).to_numpy()
    episodes = _episodes(drawdown)
    max_dd = float(drawdown.max()) if len(drawdown) else 0.0
    deepest = max(episodes, key=lambda e: e[2]) if episodes else None
    longest = max(episodes, key=lambda e: e[1] - e[0]) if episodes else None
    step_days = 365.0 / ppy if ppy and ppy > 0 else math.nan
    closed = [t for t in trades if t.exit_time is not None]
    pnls = [float(t.pnl) for t in closed]
    gains = sum(p for p in pnls if p > 0)
    losses = -sum(p for p in pnls if p < 0)
    notional = sum(float(t.size * t.entry_price) + (float(t.size * t.exit_price) if t.exit_price is not None
                                                     else 0.0) for t in trades)
    mean_equity = float(values.mean()) if len(values) else math.nan
    exposure = float((position.astype(float) != 0).mean()) if position is not None and len(position) else 0.0
    deepest_bars = deepest[1] - deepest[0] if deepest else 0
    longest_bars = longest[1] - longest[0] if longest else 0
    return {
        "total_return": total_return,
        "cagr": cagr,
        "volatility": volatility,
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": _ratio(cagr, max_dd) if not math.isnan(cagr) else math.nan,
        "max_drawdown": max_dd,
        "max_drawdown_duration_bars": deepest_bars,
        "max_drawdown_duration_days": deepest_bars * step_days,
        "longest_drawdown_bars": longest_bars,
        "longest_drawdown_days": longest_bars * step_days,
        "win_rate": sum(p > 0 for p in pnls) / len(pnls) if pnls else 0.0,
        "profit_factor": _ratio(gains, losses),
        "exposure": exposure,
        "turnover": notional / mean_equity if mean_equity else 0.0,
        "fees_paid": float(fees_paid),
        "trades": len(trades),
        "closed_trades": len(closed),
        "avg_trade_pnl": sum(pnls) / len(pnls) if pnls else 0.0,
        "starting_equity": base,
        "final_equity": final,
        "bars": len(values),
        "periods_per_year": ppy,
    }


def result_metrics(result: Any) -> dict[str, float | int]:
    """`compute_metrics` of a `backtest.result.BacktestResult`."""
    return compute_metrics(result.equity, starting_cash=result.starting_cash, trades=result.trades,
                           position=result.position, fees_paid=result.fees_paid)


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats as None and Decimals as strings, recursively (for JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, np.floating | np.integer):
        return json_safe(value.item())
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def rank_key(metric: str, value: float) -> float:
    """A sort key, ascending = best first, for `metric` (NaN last)."""
    if math.isnan(value):
        return math.inf
    return -value if HIGHER_IS_BETTER.get(metric, True) else value

