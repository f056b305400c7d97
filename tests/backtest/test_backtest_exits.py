"""The backtest's protective exits follow the execution agent's rules (`execution.exits`) where the
live-parity recording does not reach: a fill that only reduces a position the other way arms nothing,
and an exit the venue rules reject disarms the protection instead of being retried every candle."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from backtest.engine import run_backtest
from config.settings import RiskConfig
from execution.market import Market
from strategies.base import IndicatorStrategy, Param, Position, StrategyParams, make_intent, param_space
from topics.market import CandleClosed
from topics.orders import OrderUpdated
from topics.trading import OrderIntent, Side

D = Decimal
HOUR = 3_600_000


class NoParams(StrategyParams):
    pass


class Script(IndicatorStrategy):
    """At the candles in `ORDERS` (by index): an intent of that side, with that size (None: risk sizes it)."""

    name: ClassVar[str] = "script_exits"
    Params: ClassVar[type[StrategyParams]] = NoParams
    space: ClassVar[tuple[Param, ...]] = param_space(NoParams)
    ORDERS: ClassVar[dict[int, tuple[Side, Decimal | None]]] = {}
    _fields = ("seen",)

    def _setup(self) -> None:
        self.seen = 0

    def on_candle(self, candle: CandleClosed, signals: object, position: Position) -> list[OrderIntent]:
        i, self.seen = self.seen, self.seen + 1
        if i not in self.ORDERS:
            return []
        side, size = self.ORDERS[i]
        extra = {"size": size} if size is not None else {}
        return [make_intent(self.name, self.params, candle, action=f"{side}{i}", side=side, reason="script",
                            signals={}, **extra)]


def script(orders: dict[int, tuple[Side, Decimal | None]]) -> Script:
    return type("Scripted", (Script,), {"ORDERS": orders})(NoParams())


def frame(closes: list[float]) -> pd.DataFrame:
    """Hourly candles opening at the previous close, one unit either side of the body, deep volume."""
    close = np.asarray(closes, dtype=float)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame({"open_time": np.arange(len(close), dtype=np.int64) * HOUR, "open": open_,
                         "high": np.maximum(open_, close) + 1, "low": np.minimum(open_, close) - 1,
                         "close": close, "volume": np.full(len(close), 1e6)})


def created(events: tuple[object, ...]) -> list[tuple[str, str, Decimal]]:
    """(decision id, side, quantity) of every order created, in order."""
    return [(e.decision_id, e.side, e.quantity) for e in events if isinstance(e, OrderUpdated) and e.seq == 0]


@pytest.mark.parametrize("mode", ["event", "lean"])
def test_a_buy_that_only_reduces_a_short_leaves_the_shorts_stop_armed(mode: str) -> None:
    # Short 250 at 100 (stop 104 from ATR 2), then a buy of 50 with its own (long) stop: the position is
    # still short, so the short's stop keeps protecting it and fires when the price climbs through 104.
    strategy = script({16: ("sell", None), 18: ("buy", D(50))})
    result = run_backtest(frame([100.0] * 22 + [101, 102, 104, 106, 108]), strategy, symbol="BTC/USDT",
                          cash=D(100_000), fee=D("0.001"), risk=RiskConfig(trailing_atr=D(0)), mode=mode)
    short, buy = result.risk_decisions
    assert (short.side, short.size, short.stop_loss) == ("sell", D("250.0"), D("104.0"))
    assert (buy.side, buy.size, buy.stop_loss) == ("buy", D("50"), D("96.0"))
    assert created(result.order_events) == [
        (short.decision_id, "sell", D("250.0")), (buy.decision_id, "buy", D("50")),
        (f"{short.decision_id}:stop-loss", "buy", D("200.0")),
    ]
    (trade,) = result.trades
    assert trade.side == "short"
    assert trade.exit_time is not None


@pytest.mark.parametrize("mode", ["event", "lean"])
def test_an_exit_the_venue_rules_reject_disarms_the_protection(mode: str) -> None:
    # Long 250 at 100; the price collapses to 2: the position (500) is worth less than the market's
    # minimum order (1,000), so the stop's exit is rejected once and not sent again on later candles.
    market = Market("backtest", "BTC/USDT", tick_size=D("0.01"), step_size=D("0.001"),
                    min_quantity=D("0.001"), min_notional=D("1000"))
    result = run_backtest(frame([100.0] * 18 + [2.0] * 6), script({16: ("buy", None)}), symbol="BTC/USDT",
                          cash=D(100_000), fee=D("0.001"), risk=RiskConfig(), market=market, mode=mode)
    (entry,) = result.risk_decisions
    exits = [e for e in result.order_events
             if isinstance(e, OrderUpdated) and e.decision_id != entry.decision_id]
    assert [(e.decision_id, e.status) for e in exits] == [
        (f"{entry.decision_id}:trailing-stop", "new"), (f"{entry.decision_id}:trailing-stop", "rejected"),
    ]
    assert exits[-1].reasons == ["notional 500.00 is below the minimum 1000"]
