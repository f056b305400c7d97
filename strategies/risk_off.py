"""`risk_off`: flat / stablecoin. Closes any open position (reduce-only, whole size) and opens nothing.

It emits one closing intent on every candle a position is still reported open (the previous
one may not have filled yet); each has its own decision_id (the candle's open time).
"""

from __future__ import annotations

from typing import ClassVar

from strategies.base import IndicatorStrategy, Param, Position, StrategyParams, close_intent, param_space
from topics.market import CandleClosed
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent


class RiskOffParams(StrategyParams):
    """No parameters: being flat has nothing to tune."""


class RiskOff(IndicatorStrategy):
    name: ClassVar[str] = "risk_off"
    Params: ClassVar[type[RiskOffParams]] = RiskOffParams
    space: ClassVar[tuple[Param, ...]] = param_space(RiskOffParams)
    params: RiskOffParams

    def _setup(self) -> None:
        self.indicators = {}

    def on_candle(
        self, candle: CandleClosed, signals: TechnicalSignal | None, position: Position
    ) -> list[OrderIntent]:
        if position.is_flat:
            return []
        action = "exit_long" if position.quantity > 0 else "exit_short"
        return [close_intent(self.name, self.params, candle, position, action=action, signals={},
                             reason="risk-off: hold no position", technical=signals)]
