"""`sma_cross`: long only, all in; enter when SMA(fast) crosses above SMA(slow), exit when it crosses below.

Exact semantics (the backtest compares them with backtrader's SMA crossover example):
- at each candle's close, SMA(fast) and SMA(slow) of the closes up to and including it are
  updated; a cross is `indicators.crossover` (a > b after a was last strictly below b; equality
  is neither side; no cross before both averages exist);
- cross up while flat: one market `buy` intent, meant to fill at the next candle's open, with no
  size and `trace["allocation"] = 1.0` (all-in: the whole equity);
- cross down while long: one market `sell`, reduce-only, for the whole position;
- anything else: nothing (a cross up while long, or down while flat, is ignored).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from indicators.crossover import DOWN, UP, Crossover
from indicators.streaming import SMA
from strategies.base import (
    IndicatorStrategy,
    Param,
    Position,
    StrategyParams,
    close_intent,
    make_intent,
    param_space,
)
from topics.market import CandleClosed
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent


class SmaCrossParams(StrategyParams):
    fast: int = Field(10, ge=2, le=500)
    slow: int = Field(30, ge=3, le=1000)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self


class SmaCross(IndicatorStrategy):
    name: ClassVar[str] = "sma_cross"
    Params: ClassVar[type[SmaCrossParams]] = SmaCrossParams
    space: ClassVar[tuple[Param, ...]] = param_space(SmaCrossParams)
    params: SmaCrossParams

    def _setup(self) -> None:
        self.indicators = {"fast": SMA(self.params.fast), "slow": SMA(self.params.slow), "cross": Crossover()}

    def on_candle(
        self, candle: CandleClosed, signals: TechnicalSignal | None, position: Position
    ) -> list[OrderIntent]:
        fast = self.indicators["fast"].update(candle.close)  # type: ignore[attr-defined]
        slow = self.indicators["slow"].update(candle.close)  # type: ignore[attr-defined]
        crossed = self.indicators["cross"].update(fast, slow)  # type: ignore[attr-defined]
        used: dict[str, Any] = {"sma_fast": fast, "sma_slow": slow, "cross": crossed}
        if crossed == UP and position.is_flat:
            return [make_intent(self.name, self.params, candle, action="enter_long", side="buy",
                                reason="sma fast crossed above sma slow", signals=used, technical=signals,
                                extra={"allocation": 1.0})]
        if crossed == DOWN and position.quantity > 0:
            return [close_intent(self.name, self.params, candle, position, action="exit_long",
                                 reason="sma fast crossed below sma slow", signals=used, technical=signals)]
        return []
