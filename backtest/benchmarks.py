"""Benchmarks shown beside a strategy: buy-and-hold of the same asset and an equal-weight basket.

Both buy at the first close with all the cash less one fee and hold to the end, marked at each
close (the same marking as the backtest's equity). The basket splits the cash equally over its
assets at the first bar they all share and never rebalances; its curve covers only the bars every
asset has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd

from backtest.metrics import compute_metrics


@dataclass(frozen=True)
class Benchmark:
    """A named equity curve to compare with (float, UTC DatetimeIndex)."""

    name: str
    equity: pd.Series
    starting_cash: float
    fees: float = 0.0  # the one fee of the initial purchase
    assets: int = 1  # positions held from the first bar to the last

    def metrics(self) -> dict[str, float | int]:
        """The curve's metrics; as trades: one open position per asset, always exposed, no closed trade."""
        out = compute_metrics(self.equity, starting_cash=self.starting_cash, fees_paid=self.fees)
        mean = float(self.equity.mean()) if len(self.equity) else math.nan
        out.update(exposure=1.0, trades=self.assets, closed_trades=0, win_rate=math.nan,
                   profit_factor=math.nan, avg_trade_pnl=math.nan,
                   turnover=(self.starting_cash - self.fees) / mean if mean else math.nan)
        return out


def buy_and_hold(closes: pd.Series, cash: float | Decimal, fee: float | Decimal = 0.0,
                 name: str = "buy and hold") -> Benchmark:
    """Buy `cash` (less `fee`) of the asset at the first close, hold, mark at every close."""
    if closes.empty:
        raise ValueError("buy and hold needs at least one close")
    start = float(closes.iloc[0])
    if start <= 0:
        raise ValueError(f"buy and hold needs a positive first close, got {start}")
    units = float(cash) * (1.0 - float(fee)) / start
    return Benchmark(name, (closes.astype(float) * units).rename(name), float(cash), float(cash) * float(fee))


def equal_weight(closes: Mapping[str, pd.Series], cash: float | Decimal, fee: float | Decimal = 0.0,
                 name: str = "equal-weight basket") -> Benchmark:
    """`cash / n` bought of each asset at the first bar all share (less `fee`), held, summed per bar."""
    if not closes:
        raise ValueError("an equal-weight basket needs at least one asset")
    frame = pd.concat({symbol: series.astype(float) for symbol, series in closes.items()}, axis=1,
                      join="inner").sort_index()
    if frame.empty:
        raise ValueError(f"the basket's assets ({', '.join(closes)}) share no bar")
    share = float(cash) / len(frame.columns)
    units = share * (1.0 - float(fee)) / frame.iloc[0]
    equity = (frame * units).sum(axis=1)
    return Benchmark(f"{name} ({len(frame.columns)})", equity.rename(name), float(cash),
                     float(cash) * float(fee), len(frame.columns))
