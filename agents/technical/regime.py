"""A provisional, causal market regime per stream, so hit rates are counted per regime.

PROVISIONAL: the orchestrator's MarketConditionDetector will own regimes; until it exists the
technical agent labels each candle itself, from data up to that candle only:

- `high_volatility` when volatility_20 is above the 90th percentile of its own last
  VOLATILITY_WINDOW values (this one included), once MIN_HISTORY values are known;
- otherwise by the slope of SMA 50 over SLOPE_WINDOW candles: `bull` above +TREND_THRESHOLD,
  `bear` below -TREND_THRESHOLD, `neutral` between;
- `unknown` while neither is available (warm-up).
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any

VOLATILITY_WINDOW = 720  # a month of hourly candles
MIN_HISTORY = 100
QUANTILE = 0.9
SLOPE_WINDOW = 24
TREND_THRESHOLD = 0.005
REGIMES = ("high_volatility", "bull", "bear", "neutral", "unknown")


def quantile_sorted(values: list[float], q: float) -> float:
    """Linear-interpolation quantile of an ascending list (numpy's default method)."""
    position = q * (len(values) - 1)
    low = int(position)
    if low + 1 >= len(values):
        return values[-1]
    return values[low] + (values[low + 1] - values[low]) * (position - low)


class RegimeTracker:
    """The recent volatilities (in arrival order and sorted) and SMA 50 values of one stream."""

    def __init__(self) -> None:
        self.volatilities: deque[float] = deque(maxlen=VOLATILITY_WINDOW)
        self._sorted: list[float] = []
        self.smas: deque[float] = deque(maxlen=SLOPE_WINDOW + 1)

    def update(self, volatility: float | None, sma_50: float | None) -> str:
        """The regime of the candle with these values."""
        if volatility is not None:
            if len(self.volatilities) == self.volatilities.maxlen:
                del self._sorted[bisect.bisect_left(self._sorted, self.volatilities[0])]
            self.volatilities.append(volatility)
            bisect.insort(self._sorted, volatility)
        if sma_50 is not None:
            self.smas.append(sma_50)
        if (
            volatility is not None and len(self._sorted) >= MIN_HISTORY
            and volatility > quantile_sorted(self._sorted, QUANTILE)
        ):
            return "high_volatility"
        if sma_50 is None or len(self.smas) <= SLOPE_WINDOW:
            return "unknown"
        slope = self.smas[-1] / self.smas[0] - 1.0
        return "bull" if slope > TREND_THRESHOLD else "bear" if slope < -TREND_THRESHOLD else "neutral"

    def to_state(self) -> dict[str, Any]:
        return {"volatilities": list(self.volatilities), "smas": list(self.smas)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RegimeTracker:
        tracker = cls()
        tracker.volatilities.extend(state["volatilities"])
        tracker._sorted = sorted(tracker.volatilities)
        tracker.smas.extend(state["smas"])
        return tracker
