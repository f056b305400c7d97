"""Monte Carlo of a backtest: bootstrap its trade sequence and its bar returns, seeded and reproducible.

- trades: each round trip's return on the equity it started from (P/L net of fees / equity at
  the entry) is drawn with replacement, as many as there were, and compounded from the starting
  cash: the spread of outcomes had the same trades come in another order and mix;
- returns: the per-bar equity returns are drawn with replacement in blocks of `block` bars
  (1 = the plain bootstrap; longer blocks keep some autocorrelation), as many bars as there were.

Each gives percentile bands of final equity and of max drawdown (a fraction below the running
peak of the simulated path, the starting cash included), the probability of ending below the
starting cash, and the same numbers of the actual sequence, so a report shows where the real
result sits in its distribution. The same seed gives the same bands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from backtest.metrics import json_safe, returns_of

PERCENTILES = (5, 25, 50, 75, 95)
CHUNK = 256  # simulated paths per vectorised batch: bounds memory on long series


@dataclass(frozen=True)
class Bands:
    """Percentile bands of one bootstrap (percentile -> value), and the actual sequence's values."""

    kind: Literal["trades", "returns"]
    simulations: int
    seed: int
    samples: int  # trades or bars per path
    final_equity: dict[int, float]
    max_drawdown: dict[int, float]
    probability_of_loss: float
    actual_final_equity: float
    actual_max_drawdown: float

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))  # type: ignore[no-any-return]


def _max_drawdown(paths: np.ndarray, starting: float) -> np.ndarray:
    """Max drawdown per row of equity paths (columns = time), the peak starting at `starting`."""
    peaks = np.maximum.accumulate(np.maximum(paths, starting), axis=1)
    return np.max(1.0 - paths / peaks, axis=1)


def _bands(kind: Literal["trades", "returns"], returns: np.ndarray, starting: float, *, simulations: int,
           seed: int, block: int, percentiles: Sequence[int]) -> Bands:
    if simulations < 1:
        raise ValueError(f"simulations must be at least 1, got {simulations}")
    if block < 1:
        raise ValueError(f"block must be at least 1 bar, got {block}")
    n = len(returns)
    actual_path = starting * np.cumprod(1.0 + returns)[None, :] if n else np.full((1, 1), starting)
    actual_final = float(actual_path[0, -1])
    actual_dd = float(_max_drawdown(actual_path, starting)[0]) if n else 0.0
    rng = np.random.default_rng(seed)
    finals, drawdowns = [], []
    for done in range(0, simulations, CHUNK):
        size = min(CHUNK, simulations - done)
        if n == 0:
            finals.append(np.full(size, starting))
            drawdowns.append(np.zeros(size))
            continue
        blocks = math.ceil(n / block)
        starts = rng.integers(0, n, size=(size, blocks))
        index = ((starts[:, :, None] + np.arange(block)[None, None, :]) % n).reshape(size, -1)[:, :n]
        paths = starting * np.cumprod(1.0 + returns[index], axis=1)
        finals.append(paths[:, -1])
        drawdowns.append(_max_drawdown(paths, starting))
    final = np.concatenate(finals)
    drawdown = np.concatenate(drawdowns)
    return Bands(
        kind=kind, simulations=simulations, seed=seed, samples=n,
        final_equity={p: float(np.percentile(final, p)) for p in percentiles},
        max_drawdown={p: float(np.percentile(drawdown, p)) for p in percentiles},
        probability_of_loss=float(np.mean(final < starting)),
        actual_final_equity=actual_final, actual_max_drawdown=actual_dd,
    )


def bootstrap_trades(trade_returns: Sequence[float] | np.ndarray, starting: float, *, simulations: int = 1000,
                     seed: int = 0, percentiles: Sequence[int] = PERCENTILES) -> Bands:
    """Bands of compounding `trade_returns` drawn with replacement (one path = as many trades)."""
    returns = np.asarray(trade_returns, dtype=float)
    return _bands("trades", returns, float(starting), simulations=simulations, seed=seed, block=1,
                  percentiles=percentiles)


def bootstrap_returns(bar_returns: Sequence[float] | np.ndarray, starting: float, *, simulations: int = 1000,
                      seed: int = 0, block: int = 1, percentiles: Sequence[int] = PERCENTILES) -> Bands:
    """Bands of compounding per-bar returns drawn with replacement in blocks of `block` bars."""
    returns = np.asarray(bar_returns, dtype=float)
    return _bands("returns", returns, float(starting), simulations=simulations, seed=seed, block=block,
                  percentiles=percentiles)


def _starting(result: Any) -> float:
    """The starting equity of a BacktestResult (`starting_cash`) or a walk-forward Segment (`starting`)."""
    return float(result.starting_cash if hasattr(result, "starting_cash") else result.starting)


def trade_returns(result: Any) -> np.ndarray:
    """Each trade's P/L over the equity before its entry (the mark of the last bar that opened before
    the entry fill, else the starting cash), in trade order."""
    equity: pd.Series = result.equity.astype(float)
    times = pd.DatetimeIndex(equity.index).as_unit("ns").asi8 // 1_000_000
    starting = _starting(result)
    out = []
    for trade in result.trades:
        at = int(np.searchsorted(times, trade.entry_time, side="left")) - 1  # the last bar before the entry
        base = float(equity.iloc[at]) if at >= 0 else starting
        out.append(float(trade.pnl) / base if base > 0 else 0.0)
    return np.asarray(out, dtype=float)


def monte_carlo(result: Any, *, simulations: int = 1000, seed: int = 0, block: int = 1) -> dict[str, Bands]:
    """Both bootstraps of a BacktestResult or a walk-forward Segment: {"trades": Bands, "returns": Bands}."""
    starting = _starting(result)
    returns = returns_of(result.equity, starting).to_numpy()
    return {
        "trades": bootstrap_trades(trade_returns(result), starting, simulations=simulations, seed=seed),
        "returns": bootstrap_returns(returns, starting, simulations=simulations, seed=seed, block=block),
    }
