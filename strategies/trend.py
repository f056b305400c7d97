"""`trend`: EMA fast/slow crossover trend following, long only unless `allow_short`, ATR stop.

At each close: EMA(fast) and EMA(slow) of the closes and ATR(atr_period) are updated.
- EMA fast crosses above slow (`indicators.crossover`): a short is closed (reduce-only buy), and
  a market `buy` risking `risk_fraction` of equity opens with a stop `atr_multiple` x ATR below
  the close (stop and reverse: both intents on the same candle);
- crosses below: a long is closed (reduce-only sell); with `allow_short` a market `sell` opens
  with the stop `atr_multiple` x ATR above the close.
A cross in the direction already held does nothing.
Before ATR exists the entry carries no stop (risk derives one). Intents are for the next open.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from pydantic import Field, model_validator

from indicators.crossover import DOWN, UP, Crossover
from indicators.streaming import ATR, EMA
from strategies.base import (
    IndicatorStrategy,
    Param,
    Position,
    StrategyParams,
    close_intent,
    make_intent,
    param_space,
    to_price,
)
from topics.market import CandleClosed
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent, Side


class TrendParams(StrategyParams):
    fast: int = Field(20, ge=2, le=500)
    slow: int = Field(50, ge=3, le=1000)
    atr_period: int = Field(14, ge=2, le=200)
    atr_multiple: float = Field(2.0, ge=0.1, le=20.0)
    risk_fraction: float = Field(0.01, ge=0.0001, le=0.2)
    allow_short: bool = False

    @model_validator(mode="after")
    def _fast_below_slow(self) -> TrendParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self


def atr_stop(close: float, atr: float | None, multiple: float, direction: int) -> Decimal | None:
    """A stop `multiple` ATRs against a position of `direction` (+1 long, -1 short); None without ATR."""
    if atr is None:
        return None
    stop = close - direction * multiple * atr
    return to_price(stop) if stop > 0 and to_price(stop) > 0 else None


class Trend(IndicatorStrategy):
    name: ClassVar[str] = "trend"
    Params: ClassVar[type[TrendParams]] = TrendParams
    space: ClassVar[tuple[Param, ...]] = param_space(TrendParams)
    params: TrendParams

    def _setup(self) -> None:
        p = self.params
        self.indicators = {"fast": EMA(p.fast), "slow": EMA(p.slow), "atr": ATR(p.atr_period),
                           "cross": Crossover()}

    def on_candle(
        self, candle: CandleClosed, signals: TechnicalSignal | None, position: Position
    ) -> list[OrderIntent]:
        p, ind = self.params, self.indicators
        fast = ind["fast"].update(candle.close)  # type: ignore[attr-defined]
        slow = ind["slow"].update(candle.close)  # type: ignore[attr-defined]
        atr = ind["atr"].update(candle.high, candle.low, candle.close)  # type: ignore[attr-defined]
        crossed = ind["cross"].update(fast, slow)  # type: ignore[attr-defined]
        used: dict[str, Any] = {"ema_fast": fast, "ema_slow": slow, "atr": atr, "cross": crossed}
        risk = Decimal(repr(p.risk_fraction))
        if crossed not in (UP, DOWN):
            return []
        direction = 1 if crossed == UP else -1
        why = "ema fast crossed above ema slow" if crossed == UP else "ema fast crossed below ema slow"
        intents = []
        if position.quantity * direction < 0:  # against the cross: close it (then maybe reverse)
            intents.append(close_intent(self.name, p, candle, position, action="exit_short" if crossed == UP
                                        else "exit_long", reason=why, signals=used, technical=signals))
        if position.quantity * direction <= 0 and (crossed == UP or p.allow_short):
            action = "enter_long" if crossed == UP else "enter_short"
            side: Side = "buy" if crossed == UP else "sell"
            intents.append(make_intent(self.name, p, candle, action=action, side=side, reason=why,
                                       signals=used, technical=signals, risk_fraction=risk,
                                       stop_price=atr_stop(candle.close, atr, p.atr_multiple, direction)))
        return intents
