"""Builders of synthetic backtest results and candles for the analytics tests (no engine needed)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

from backtest.result import BacktestResult, Trade

HOUR_MS = 3_600_000
START_MS = 1_640_995_200_000  # 2022-01-01T00:00:00Z


def hourly_index(count: int, start_ms: int = START_MS) -> pd.DatetimeIndex:
    return pd.to_datetime([start_ms + i * HOUR_MS for i in range(count)], unit="ms", utc=True)


def trade(pnl: float, *, entry: float = 100.0, size: float = 1.0, at: int = 0, fees: float = 0.0,
          closed: bool = True) -> Trade:
    exit_price = entry + (pnl + fees) / size
    return Trade(
        symbol="BTC/USDT", side="long", entry_time=START_MS + at * HOUR_MS,
        exit_time=START_MS + (at + 1) * HOUR_MS if closed else None,
        entry_price=Decimal(str(entry)), exit_price=Decimal(str(exit_price)) if closed else None,
        size=Decimal(str(size)), fees=Decimal(str(fees)), pnl=Decimal(str(pnl)),
    )


def result(equity: Sequence[float], *, starting: float | None = None, trades: Sequence[Trade] = (),
           position: Sequence[float] | None = None, closes: Sequence[float] | None = None,
           strategy: str = "sma_cross", params: dict[str, object] | None = None, fees: float = 0.0,
           start_ms: int = START_MS) -> BacktestResult:
    index = hourly_index(len(equity), start_ms)
    start = Decimal(str(starting if starting is not None else equity[0]))
    return BacktestResult(
        symbol="BTC/USDT", strategy=strategy, params=params or {}, starting_cash=start,
        final_equity=Decimal(str(equity[-1])), fees_paid=Decimal(str(fees)), trades=list(trades),
        equity=pd.Series(np.asarray(equity, dtype=float), index=index),
        position=pd.Series(np.asarray(position if position is not None else [0.0] * len(equity), dtype=float),
                           index=index),
        closes=pd.Series(np.asarray(closes if closes is not None else equity, dtype=float), index=index),
    )


def random_walk_candles(count: int, *, seed: int = 0, drift: float = 0.0, symbol: str = "BTC/USDT",
                        start_ms: int = START_MS) -> pd.DataFrame:
    """A candle frame shaped like `read_candles` output: a seeded geometric random walk."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(drift, 0.01, count)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    return pd.DataFrame({
        "open_time": np.arange(count, dtype=np.int64) * HOUR_MS + start_ms, "open": open_, "high": high,
        "low": low, "close": close, "volume": np.full(count, 10.0), "symbol": symbol,
    })


def toy_run(candles: pd.DataFrame, strategy: object, *, symbol: str, cash: Decimal, fee: Decimal,
            slippage_bps: Decimal = Decimal(0), progress: object = None) -> BacktestResult:
    """A tiny all-in, long-only stand-in for the engine with its signature: a buy intent fills at the
    next open with all the cash, a sell closes everything there; marked at each close."""
    from strategies.base import Position
    from topics.market import CandleClosed

    rate = float(fee)
    money, units, entry, entry_fee = float(cash), 0.0, None, 0.0
    pending: str | None = None
    trades, equity, position = [], [], []
    fees_paid = 0.0
    for row in candles.itertuples(index=False):
        if pending == "buy" and units == 0:
            entry_fee = money * rate
            units, money, entry = (money - entry_fee) / row.open, 0.0, (row.open_time, row.open)
            fees_paid += entry_fee
        elif pending == "sell" and units > 0 and entry is not None:
            gross = units * row.open
            exit_fee = gross * rate
            fees_paid += exit_fee
            cost = units * entry[1]
            trades.append(Trade(symbol, "long", entry[0], int(row.open_time), Decimal(repr(entry[1])),
                                Decimal(repr(row.open)), Decimal(repr(units)),
                                Decimal(repr(entry_fee + exit_fee)),
                                Decimal(repr(gross - exit_fee - cost - entry_fee))))
            money, units, entry = gross - exit_fee, 0.0, None
        pending = None
        candle = CandleClosed(exchange="binance", symbol=symbol, timeframe="1h", open_time=int(row.open_time),
                              close_time=int(row.open_time) + HOUR_MS, open=row.open, high=row.high,
                              low=row.low, close=row.close, volume=row.volume)
        held = Position(Decimal(repr(units)))
        for intent in strategy.on_candle(candle, None, held):  # type: ignore[attr-defined]
            pending = intent.side
        equity.append(money + units * row.close)
        position.append(units)
    if entry is not None:
        marked = units * float(candles["close"].iloc[-1]) - units * entry[1] - entry_fee
        trades.append(Trade(symbol, "long", entry[0], None, Decimal(repr(entry[1])), None,
                            Decimal(repr(units)), Decimal(repr(entry_fee)), Decimal(repr(marked))))
    index = pd.to_datetime(candles["open_time"].to_numpy(), unit="ms", utc=True)  # as the engine labels bars
    return BacktestResult(
        symbol=symbol, strategy=strategy.name,  # type: ignore[attr-defined]
        params=strategy.params.model_dump(),  # type: ignore[attr-defined]
        starting_cash=cash, final_equity=Decimal(repr(equity[-1])), fees_paid=Decimal(repr(fees_paid)),
        trades=trades, equity=pd.Series(equity, index=index), position=pd.Series(position, index=index),
        closes=pd.Series(candles["close"].to_numpy(), index=index), fee=fee,
    )
