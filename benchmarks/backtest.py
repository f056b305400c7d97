"""Backtest throughput: the SMA(20/50) crossover on one-minute bars, beside backtrader and vectorbt.

    python benchmarks/backtest.py [--quick]

The bars are a seeded random walk with plausible OHLCV (the same on every run): 1,000,000
one-minute bars (`--quick`: 20,000), volume large enough that the all-in orders never fill
partially. The strategy is `sma_cross` (fast 20, slow 50, long only, all in at the next bar's
open, 0.01% fee per side, 100,000 cash: at 0.1% the ~5,700 round trips of a random walk grind the
account below the paper venue's minimum order by bar ~500,000, after which ours, rightly, cannot
trade and vectorbt, which has no minimum, goes on). Measured, in bars per second, in this one run:

- `event_engine_bars_per_s`: `run_backtest(mode="lean")`, the per-event engine (the strategy object
  every bar, orders through the paper venue); reference: backtrader on the first 100,000 bars
  (`--quick`: 5,000), which is too slow for a million. Target: at least 100,000 bars/s.
- `event_engine_vs_bare_loop`: the same figure against a bare Python loop with incremental SMAs
  and float all-in fills: the floor for any per-event Python engine.
- `full_event_path_bars_per_s`: `mode="event"` (a validated event per bar, the venue and the
  ledger every bar) on the backtrader bars; reference: backtrader.
- `vector_engine_bars_per_s`: `run_backtest(mode="vector")`; reference: vectorbt's
  `Portfolio.from_signals` on the same bars (numba compiled before timing, ours and theirs). Target:
  at least vectorbt's speed. Both make their trade records on first use; so that nothing hides
  there, `vector_engine_with_trades_bars_per_s` times both with their trades made.
- `vector_engine_paper_market_bars_per_s`: the vector path on the paper agents' generic market
  (ticks and steps of 1e-8), whose amounts in 1e-16 units exceed 64 bits: it books in Python
  integers.

Our runs use Binance's BTC/USDT rules (tick 0.01, step 0.00001, minimum 5 USDT) unless said.

Every row says whether the trades are identical: ours across paths exactly (Decimal), and
vectorbt's and backtrader's fill bars against ours.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# This script has the package's name: take its own folder off the path so that `backtest`
# below is the package it measures, not this file.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from backtest.engine import run_backtest  # noqa: E402
from backtest.result import BacktestResult  # noqa: E402
from execution.market import Market  # noqa: E402

FAST, SLOW = 20, 50
FEE = 0.0001
CASH = 100_000.0


def synthetic_bars(count: int) -> pd.DataFrame:
    """A seeded random walk of one-minute bars with plausible OHLCV."""
    rng = np.random.default_rng(11)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, count)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.0003, count)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.0003, count)))
    volume = rng.lognormal(8.0, 0.5, count)  # thousands of units a bar: all-in orders fill whole
    times = 1_600_000_000_000 + np.arange(count, dtype=np.int64) * 60_000
    return pd.DataFrame({"open_time": times, "open": np.round(open_, 2), "high": np.round(high, 2),
                         "low": np.round(low, 2), "close": np.round(close, 2), "volume": np.round(volume, 4)})


def fix_ohlc(frame: pd.DataFrame) -> pd.DataFrame:
    """Rounding may put open or close a cent outside high/low: widen them."""
    body_high = frame[["open", "close"]].max(axis=1)
    body_low = frame[["open", "close"]].min(axis=1)
    return frame.assign(high=np.maximum(frame.high, body_high), low=np.minimum(frame.low, body_low))


# Binance's BTC/USDT rules: prices on 0.01, quantities on 0.00001, at least 5 USDT an order.
BINANCE_BTC = Market("backtest", "BTC/USDT", tick_size=Decimal("0.01"), step_size=Decimal("0.00001"),
                     min_quantity=Decimal("0.00001"), min_notional=Decimal(5))


def ours(frame: pd.DataFrame, mode: str, market: Market | None = BINANCE_BTC) -> BacktestResult:
    return run_backtest(frame, "sma_cross", params={"fast": FAST, "slow": SLOW}, symbol="BTC/USDT",
                        cash=Decimal(int(CASH)), fee=Decimal(repr(FEE)), mode=mode,  # type: ignore[arg-type]
                        market=market)


def ours_with_trades(frame: pd.DataFrame, market: Market | None = BINANCE_BTC) -> BacktestResult:
    """The vector run with its trades made (`TradeLog` makes them on first use)."""
    result = ours(frame, "vector", market)
    list(result.trades)
    return result


def fill_bars(result: BacktestResult, open_time: np.ndarray) -> list[int]:
    """Bar indices of every entry and exit fill, in order."""
    times = [t for trade in result.trades for t in (trade.entry_time, trade.exit_time) if t is not None]
    return np.searchsorted(open_time, np.asarray(times, dtype=np.int64)).tolist()


def bare_loop(frame: pd.DataFrame) -> tuple[float, int]:
    """SMA crossover with incremental sums and float all-in fills at the next open: (final equity, fills)."""
    o, c = frame.open.tolist(), frame.close.tolist()
    fast_sum = slow_sum = 0.0
    side = 0
    cash, held, pending, fills = CASH, 0.0, 0, 0
    for i in range(len(c)):
        if pending:
            price = o[i]
            if pending > 0:
                held = math.floor(cash / (price * (1 + FEE)) * 1e8) / 1e8
                cash -= held * price * (1 + FEE)
            else:
                cash += held * price * (1 - FEE)
                held = 0.0
            pending, fills = 0, fills + 1
        value = c[i]
        fast_sum += value
        slow_sum += value
        if i >= FAST:
            fast_sum -= c[i - FAST]
        if i >= SLOW:
            slow_sum -= c[i - SLOW]
        if i < SLOW - 1:
            continue
        diff = fast_sum / FAST - slow_sum / SLOW
        now = 1 if diff > 0 else -1 if diff < 0 else 0
        if now and now != side:
            if side and now > 0 and held == 0:
                pending = 1
            elif side and now < 0 and held > 0:
                pending = -1
            side = now
    return cash + held * c[-1], fills


def vectorbt_run(frame: pd.DataFrame, trades: bool = False) -> tuple[float, list[int]]:
    """vectorbt as its users run it for speed: plain arrays in (a DatetimeIndex with `freq` makes
    `from_signals` about 10x slower and changes nothing here), its MA and crossover helpers, and
    `Portfolio.from_signals` filling all-in at the open of the bar after each cross."""
    import vectorbt as vbt

    close = pd.Series(frame.close.to_numpy())
    open_ = frame.open.to_numpy()
    fast = vbt.MA.run(close, FAST).ma
    slow = vbt.MA.run(close, SLOW).ma
    entries = fast.vbt.crossed_above(slow).shift(1, fill_value=False).to_numpy(dtype=bool)
    exits = fast.vbt.crossed_below(slow).shift(1, fill_value=False).to_numpy(dtype=bool)
    portfolio = vbt.Portfolio.from_signals(close.to_numpy(), entries, exits, price=open_, fees=FEE,
                                           init_cash=CASH, size=np.inf)
    if trades:
        portfolio.trades.records  # noqa: B018 - vectorbt makes its trade records when asked
    return float(portfolio.final_value()), portfolio.orders.records["idx"].tolist()


def backtrader_run(frame: pd.DataFrame) -> tuple[float, list[int]]:
    import backtrader as bt

    bars: list[int] = []

    class Reference(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.cross = bt.indicators.CrossOver(bt.indicators.SMA(self.data.close, period=FAST),
                                                 bt.indicators.SMA(self.data.close, period=SLOW))
            self.enter = False

        def next_open(self) -> None:
            if self.enter:
                self.enter = False
                price = self.data.open[0]
                self.buy(size=math.floor(self.broker.getcash() / (price * (1 + FEE)) * 1e8) / 1e8)

        def next(self) -> None:
            if not self.position and self.cross[0] > 0:
                self.enter = True
            elif self.position and self.cross[0] < 0:
                self.close()

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                bars.append(len(self.data) - 1)

    feed = frame.assign(datetime=pd.to_datetime(frame.open_time, unit="ms")).set_index("datetime")
    cerebro = bt.Cerebro(cheat_on_open=True, stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed[["open", "high", "low", "close", "volume"]]))
    cerebro.addstrategy(Reference)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_checksubmit(False)
    cerebro.run()
    return float(cerebro.broker.getvalue()), bars


def timed(action: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    """(median seconds, last result) over `rounds` runs."""
    times, out = [], None
    for _ in range(rounds):
        began = time.perf_counter()
        out = action()
        times.append(time.perf_counter() - began)
    return statistics.median(times), out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.node()}: {os.cpu_count()} vCPU {cpu} ({platform.machine()}), "
            f"Python {platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 bars, one round (a smoke run)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # vectorbt and backtrader use APIs their dependencies deprecated
    count, reference_count, rounds = (20_000, 5_000, 1) if args.quick else (1_000_000, 100_000, 3)
    frame = fix_ohlc(synthetic_bars(count))
    small = frame.iloc[:reference_count].reset_index(drop=True)
    open_time = frame.open_time.to_numpy()

    ours(frame.iloc[:2_000], "lean")  # warm imports and caches before timing
    ours(frame.iloc[:2_000], "vector")  # loads (or compiles) the vector path's numba code
    vectorbt_run(frame.iloc[:2_000], trades=True)  # numba compiles here, not in the timed runs

    lean_s, lean = timed(lambda: ours(frame, "lean"), rounds)
    vector_s, vector = timed(lambda: ours(frame, "vector"), rounds)
    traded_s, _ = timed(lambda: ours_with_trades(frame), rounds)
    paper_s, paper = timed(lambda: ours(frame, "vector", market=None), rounds)
    vbt_traded_s, _ = timed(lambda: vectorbt_run(frame, trades=True), rounds)
    bare_s, (bare_value, bare_fills) = timed(lambda: bare_loop(frame), rounds)
    vbt_s, (vbt_value, vbt_bars) = timed(lambda: vectorbt_run(frame), rounds)
    event_s, event = timed(lambda: ours(small, "event"), 1)
    bt_s, (bt_value, bt_bars) = timed(lambda: backtrader_run(small), 1)
    lean_small = ours(small, "lean")

    ours_bars = fill_bars(lean, open_time)
    identical = lean.trades == vector.trades and lean.final_equity == vector.final_equity
    common = {"bars": count, "rounds": rounds, "trades": len(lean.trades), "machine": machine()}
    rate = {name: bars / seconds for name, bars, seconds in (
        ("lean", count, lean_s), ("vector", count, vector_s), ("bare", count, bare_s), ("vbt", count, vbt_s),
        ("traded", count, traded_s), ("paper", count, paper_s), ("vbt_traded", count, vbt_traded_s),
        ("event", reference_count, event_s), ("bt", reference_count, bt_s))}
    bt_same = fill_bars(lean_small, open_time) == bt_bars
    rows = [
        {
            "bench": "backtest", "metric": "event_engine_bars_per_s", "value": round(rate["lean"]),
            "unit": "bars/s", "reference": f"backtrader {_version('backtrader')} (cheat-on-open), same "
            f"strategy, first {reference_count:,} bars", "reference_value": round(rate["bt"]),
            "ratio": round(rate["lean"] / rate["bt"], 2), "target": 100_000,
            "identical_trades": identical and bt_same,
            "backtrader_final_equity_rel_diff": abs(float(lean_small.final_equity) / bt_value - 1), **common,
        },
        {
            "bench": "backtest", "metric": "event_engine_vs_bare_loop", "value": round(rate["lean"]),
            "unit": "bars/s", "reference": "a bare Python loop with incremental SMAs and float all-in fills",
            "reference_value": round(rate["bare"]), "ratio": round(rate["lean"] / rate["bare"], 3),
            "identical_trades": fill_bars(lean, open_time) == ours_bars and len(ours_bars) == bare_fills,
            "bare_final_equity_rel_diff": abs(float(lean.final_equity) / bare_value - 1), **common,
        },
        {
            "bench": "backtest", "metric": "full_event_path_bars_per_s", "value": round(rate["event"]),
            "unit": "bars/s", "reference": f"backtrader on the same {reference_count:,} bars",
            "reference_value": round(rate["bt"]), "ratio": round(rate["event"] / rate["bt"], 2),
            "identical_trades": event.trades == lean_small.trades and bt_same, **common,
            "bars": reference_count,
        },
        {
            "bench": "backtest", "metric": "vector_engine_bars_per_s", "value": round(rate["vector"]),
            "unit": "bars/s",
            "reference": f"vectorbt {_version('vectorbt')} Portfolio.from_signals, same bars",
            "reference_value": round(rate["vbt"]), "ratio": round(rate["vector"] / rate["vbt"], 2),
            "identical_trades": identical and ours_bars == vbt_bars,
            "vectorbt_final_equity_rel_diff": abs(float(vector.final_equity) / vbt_value - 1), **common,
        },
        {
            "bench": "backtest", "metric": "vector_engine_with_trades_bars_per_s",
            "value": round(rate["traded"]), "unit": "bars/s",
            "reference": "vectorbt, same, with its trade records made",
            "reference_value": round(rate["vbt_traded"]),
            "ratio": round(rate["traded"] / rate["vbt_traded"], 2),
            "identical_trades": identical and ours_bars == vbt_bars, **common,
        },
        {
            "bench": "backtest", "metric": "vector_engine_paper_market_bars_per_s",
            "value": round(rate["paper"]), "unit": "bars/s",
            "reference": "vectorbt, same bars (ours on the paper agents' 1e-8 ticks and steps: amounts in "
            "1e-16 units exceed 64 bits, so it books in Python integers)",
            "reference_value": round(rate["vbt"]), "ratio": round(rate["paper"] / rate["vbt"], 2),
            "identical_trades": fill_bars(paper, open_time) == vbt_bars, **common,
        },
    ]
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
