"""Parity with a reference engine: SMA(20/50) crossover, long only, all in at the next bar's open, 0.1% fee
per side, 100,000 cash, on real BTC/USDT candles, against backtrader run on the same data in the same test.

backtrader's side of the bargain: `cheat_on_open`, so an entry decided at a close is sized with the next
bar's open (all the cash, fee included) and fills at that open; exits are plain market orders, which
fill at the next open too; the commission is 0.1% of the fill value.
"""

from __future__ import annotations

import math
from datetime import UTC
from decimal import Decimal
from typing import Any

import backtrader as bt
import pandas as pd
import pytest

from agents.market_data.files import read_candles, shared_datasets
from backtest.engine import run_backtest

FAST, SLOW = 20, 50
FEE = 0.001
CASH = 100_000.0
BARS = 20_000  # the last 20,000 hours (2020-06 .. 2022-10): bull, crash and chop


class SmaCrossReference(bt.Strategy):  # type: ignore[misc]
    params = (("fast", FAST), ("slow", SLOW), ("fee", FEE))

    def __init__(self) -> None:
        fast = bt.indicators.SimpleMovingAverage(self.data.close, period=self.p.fast)
        slow = bt.indicators.SimpleMovingAverage(self.data.close, period=self.p.slow)
        self.cross = bt.indicators.CrossOver(fast, slow)
        self.enter = False
        self.fills: list[tuple[str, Any, float, float]] = []

    def next_open(self) -> None:  # the new bar's open, before its orders fill (cheat-on-open)
        if self.enter:
            self.enter = False
            price = self.data.open[0]
            size = math.floor(self.broker.getcash() / (price * (1 + self.p.fee)) * 1e8) / 1e8
            self.buy(size=size)

    def next(self) -> None:  # the bar's close: decide
        if not self.position and self.cross[0] > 0:
            self.enter = True
        elif self.position and self.cross[0] < 0:
            self.close()

    def notify_order(self, order: Any) -> None:
        if order.status == order.Completed:
            side = "buy" if order.isbuy() else "sell"
            when = bt.num2date(order.executed.dt).replace(tzinfo=UTC)
            self.fills.append((side, when, order.executed.price, abs(order.executed.size)))


def backtrader_run(candles: pd.DataFrame) -> tuple[float, list[tuple[str, Any, float, float]]]:
    feed = candles.assign(datetime=pd.to_datetime(candles.open_time, unit="ms")).set_index("datetime")
    cerebro = bt.Cerebro(cheat_on_open=True, stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed[["open", "high", "low", "close", "volume"]]))
    cerebro.addstrategy(SmaCrossReference)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_checksubmit(False)  # sizes are computed to fit; no second-guessing by margin checks
    (strategy,) = cerebro.run()
    return cerebro.broker.getvalue(), strategy.fills


def on_tick(price: float) -> Decimal:
    """backtrader's float price at the venue's 1e-8 tick (pandas may parse 30742.99 as 30742.989999999998;
    the paper venue rounds prices to the tick, backtrader keeps the float)."""
    return Decimal(repr(price)).quantize(Decimal("1e-8"))


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    path = shared_datasets() / "ohlcv" / "binance_spot_1h_2017-2022" / "BTC_USDT-1h.csv.gz"
    frame = read_candles(path, symbol="BTC/USDT", timeframe="1h")
    return frame.drop(columns="symbol").iloc[-BARS:].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(candles: pd.DataFrame) -> tuple[float, list[tuple[str, Any, float, float]]]:
    return backtrader_run(candles)


@pytest.mark.parametrize("mode", ["lean", "vector", "event"])
def test_sma_cross_gives_backtraders_trades_and_final_equity(
    candles: pd.DataFrame, reference: tuple[float, list[tuple[str, Any, float, float]]], mode: str
) -> None:
    ours = run_backtest(candles, "sma_cross", params={"fast": FAST, "slow": SLOW}, symbol="BTC/USDT",
                        cash=Decimal(int(CASH)), fee=Decimal(repr(FEE)), mode=mode)  # type: ignore[arg-type]
    value, fills = reference
    assert ours.engine == mode
    theirs = [fills[i:i + 2] for i in range(0, len(fills), 2)]
    assert len(ours.trades) == len(theirs) > 100
    for trade, pair in zip(ours.trades, theirs, strict=True):
        entry = pair[0]
        assert entry[0] == "buy"
        assert pd.Timestamp(trade.entry_time, unit="ms", tz="UTC") == entry[1]
        assert trade.entry_price == on_tick(entry[2])
        assert float(trade.size) == pytest.approx(entry[3], abs=1.5e-8)
        if len(pair) == 2:
            exit_ = pair[1]
            assert exit_[0] == "sell"
            assert trade.exit_time is not None
            assert pd.Timestamp(trade.exit_time, unit="ms", tz="UTC") == exit_[1]
            assert trade.exit_price == on_tick(exit_[2])
        else:
            assert trade.exit_time is None
    assert float(ours.final_equity) == pytest.approx(value, rel=1e-6)
