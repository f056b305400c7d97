"""`mean_reversion`: buy below the lower Bollinger band while the RSI is oversold; exit at the middle band.

At each close: Bollinger(bb_period, nbdev), RSI(rsi_period) and ATR(atr_period) are updated.
- flat, close < lower band and RSI < `oversold`: market `buy` risking `risk_fraction` of equity,
  take profit at the middle band, stop `atr_multiple` x ATR below the close;
- long and close >= middle band: reduce-only `sell` of the whole position.
Long only. Intents are meant for the next candle's open.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from pydantic import Field

from indicators.streaming import ATR, RSI, BollingerBands
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
from strategies.trend import atr_stop
from topics.market import CandleClosed
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent


class MeanReversionParams(StrategyParams):
    bb_period: int = Field(20, ge=2, le=500)
    nbdev: float = Field(2.0, ge=0.5, le=5.0)
    rsi_period: int = Field(14, ge=2, le=200)
    oversold: float = Field(30.0, ge=1.0, le=50.0)
    atr_period: int = Field(14, ge=2, le=200)
    atr_multiple: float = Field(2.0, ge=0.1, le=20.0)
    risk_fraction: float = Field(0.01, ge=0.0001, le=0.2)


class MeanReversion(IndicatorStrategy):
    name: ClassVar[str] = "mean_reversion"
    Params: ClassVar[type[MeanReversionParams]] = MeanReversionParams
    space: ClassVar[tuple[Param, ...]] = param_space(MeanReversionParams)
    params: MeanReversionParams

    def _setup(self) -> None:
        p = self.params
        self.indicators = {"bands": BollingerBands(p.bb_period, p.nbdev), "rsi": RSI(p.rsi_period),
                           "atr": ATR(p.atr_period)}

    def on_candle(
        self, candle: CandleClosed, signals: TechnicalSignal | None, position: Position
    ) -> list[OrderIntent]:
        p, ind = self.params, self.indicators
        bands = ind["bands"].update(candle.close)  # type: ignore[attr-defined]
        rsi = ind["rsi"].update(candle.close)  # type: ignore[attr-defined]
        atr = ind["atr"].update(candle.high, candle.low, candle.close)  # type: ignore[attr-defined]
        if bands is None:
            return []
        used: dict[str, Any] = {"bb_upper": bands.upper, "bb_middle": bands.middle, "bb_lower": bands.lower,
                                "rsi": rsi, "atr": atr}
        if position.is_flat and rsi is not None and candle.close < bands.lower and rsi < p.oversold:
            target = to_price(bands.middle) if bands.middle > 0 else None
            return [make_intent(self.name, p, candle, action="enter_long", side="buy", signals=used,
                                reason="close below the lower band with rsi oversold", technical=signals,
                                stop_price=atr_stop(candle.close, atr, p.atr_multiple, 1), take_profit=target,
                                risk_fraction=Decimal(repr(p.risk_fraction)))]
        if position.quantity > 0 and candle.close >= bands.middle:
            return [close_intent(self.name, p, candle, position, action="exit_long", signals=used,
                                 reason="close reached the middle band", technical=signals)]
        return []
