"""`breakout`: Donchian channel breakout with an ATR stop, long only.

At each close, the channel is the highest high of the `period` candles before this one and the
exit channel the lowest low of the `exit_period` candles before this one (the current candle is
never in its own channel). ATR(atr_period) is updated.
- flat and close > channel high: market `buy` risking `risk_fraction`, stop `atr_multiple` x ATR
  below the close;
- long and close < exit channel low: reduce-only `sell` of the whole position.
Nothing happens until `period` candles have been seen. Intents are for the next open.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from pydantic import Field

from indicators.streaming import ATR
from strategies.base import (
    IndicatorStrategy,
    Param,
    Position,
    StrategyParams,
    close_intent,
    make_intent,
    param_space,
)
from strategies.trend import atr_stop
from topics.market import CandleClosed
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent


class BreakoutParams(StrategyParams):
    period: int = Field(20, ge=2, le=500)
    exit_period: int = Field(10, ge=2, le=500)
    atr_period: int = Field(14, ge=2, le=200)
    atr_multiple: float = Field(2.0, ge=0.1, le=20.0)
    risk_fraction: float = Field(0.01, ge=0.0001, le=0.2)


class Breakout(IndicatorStrategy):
    name: ClassVar[str] = "breakout"
    Params: ClassVar[type[BreakoutParams]] = BreakoutParams
    space: ClassVar[tuple[Param, ...]] = param_space(BreakoutParams)
    params: BreakoutParams
    _fields: ClassVar[tuple[str, ...]] = ("highs", "lows")

    def _setup(self) -> None:
        self.indicators = {"atr": ATR(self.params.atr_period)}
        self.highs: list[float] = []  # the last `period` highs before the current candle
        self.lows: list[float] = []  # the last `exit_period` lows before the current candle

    def on_candle(
        self, candle: CandleClosed, signals: TechnicalSignal | None, position: Position
    ) -> list[OrderIntent]:
        p = self.params
        atr = self.indicators["atr"].update(candle.high, candle.low, candle.close)  # type: ignore[attr-defined]
        upper = max(self.highs) if len(self.highs) == p.period else None
        lower = min(self.lows) if len(self.lows) == p.exit_period else None
        self.highs = [*self.highs, candle.high][-p.period:]
        self.lows = [*self.lows, candle.low][-p.exit_period:]
        used: dict[str, Any] = {"donchian_high": upper, "donchian_exit_low": lower, "atr": atr}
        if position.is_flat and upper is not None and candle.close > upper:
            return [make_intent(self.name, p, candle, action="enter_long", side="buy", signals=used,
                                reason="close broke above the donchian high", technical=signals,
                                stop_price=atr_stop(candle.close, atr, p.atr_multiple, 1),
                                risk_fraction=Decimal(repr(p.risk_fraction)))]
        if position.quantity > 0 and lower is not None and candle.close < lower:
            return [close_intent(self.name, p, candle, position, action="exit_long", signals=used,
                                 reason="close broke below the donchian exit low", technical=signals)]
        return []
