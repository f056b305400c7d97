"""Discrete technical signals of one stream, candle by candle: crosses, breakouts, squeezes, spikes, patterns.

A cross is `indicators.Crossover`'s: from strictly one side to strictly the other, a missing
value forgets the side. So each signal fires on the candle where the batch series would cross:

| signal | fires when | expects |
|---|---|---|
| ema_cross_up / ema_cross_down | EMA 20 crosses above / below EMA 50 | up / down |
| sma_cross_up / sma_cross_down | SMA 20 crosses above / below SMA 50 | up / down |
| macd_cross_up / macd_cross_down | MACD crosses above / below its signal line | up / down |
| rsi_overbought / rsi_oversold | RSI 14 crosses above the overbought / below the oversold level | down / up |
| bb_breakout_up / _down | the close crosses above the upper / below the lower band (20, 2) | up / down |
| bb_squeeze | band width (upper-lower)/middle becomes the narrowest of `squeeze_lookback` | move |
| volume_spike | the volume z-score (20) crosses above the threshold | move |
| cdl_<pattern> | TA-Lib reports it (engulfing: _bullish / _bearish by sign) | its sign; doji: move |

Overbought/oversold expect mean reversion; a squeeze, a spike and a doji promise a move, not
its direction.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from agents.technical.features import VOLUME_Z
from config.settings import TechnicalConfig
from indicators import PATTERN_NAMES, Crossover
from indicators.crossover import DOWN, UP

Signal = tuple[str, str]  # (name, expects)
Values = dict[str, float | int | None]

_CROSSES = (  # (name, a, b)
    ("ema_cross", "ema_20", "ema_50"),
    ("sma_cross", "sma_20", "sma_50"),
    ("macd_cross", "macd_12_26_9", "macd_signal_12_26_9"),
)
TWO_SIDED_PATTERNS = frozenset({"engulfing"})
NEUTRAL_PATTERNS = frozenset({"doji"})


def pattern_signal(pattern: str, value: int) -> Signal:
    """The signal of a TA-Lib pattern value (+ bullish, - bearish)."""
    name = f"cdl_{pattern}"
    if pattern in NEUTRAL_PATTERNS:
        return name, "move"
    expects = "up" if value > 0 else "down"
    if pattern in TWO_SIDED_PATTERNS:
        name += "_bullish" if value > 0 else "_bearish"
    return name, expects


def band_width(values: Values) -> float | None:
    """(upper - lower) / middle of the Bollinger band (20, 2); None while warming up or at a zero middle."""
    upper, middle, lower = values["bb_upper_20_2"], values["bb_middle_20_2"], values["bb_lower_20_2"]
    if upper is None or middle is None or lower is None or middle == 0:
        return None
    return (upper - lower) / middle


class SignalDetector:
    """The streaming state behind the signals of one stream; `to_state()` is plain JSON."""

    def __init__(self, config: TechnicalConfig) -> None:
        self.config = config
        self.crosses = {name: Crossover() for name, _, _ in _CROSSES}
        self.rsi_high = Crossover()
        self.rsi_low = Crossover()
        self.upper = Crossover()
        self.lower = Crossover()
        self.volume = Crossover()
        self.widths: deque[float] = deque(maxlen=config.squeeze_lookback)
        self.squeezed = False

    def update(self, close: float, values: Values) -> list[Signal]:
        """The signals of the candle whose indicator `values` (with VOLUME_Z) are given."""
        cfg = self.config
        out: list[Signal] = []
        for name, a, b in _CROSSES:
            side = self.crosses[name].update(_number(values[a]), _number(values[b]))
            if side:
                out.append((f"{name}_up", "up") if side == UP else (f"{name}_down", "down"))
        rsi = _number(values["rsi_14"])
        if self.rsi_high.update(rsi, cfg.rsi_overbought) == UP:
            out.append(("rsi_overbought", "down"))
        if self.rsi_low.update(rsi, cfg.rsi_oversold) == DOWN:
            out.append(("rsi_oversold", "up"))
        if self.upper.update(close, _number(values["bb_upper_20_2"])) == UP:
            out.append(("bb_breakout_up", "up"))
        if self.lower.update(close, _number(values["bb_lower_20_2"])) == DOWN:
            out.append(("bb_breakout_down", "down"))
        width = band_width(values)
        squeezed = width is not None and len(self.widths) == self.widths.maxlen and width <= min(self.widths)
        if squeezed and not self.squeezed:
            out.append(("bb_squeeze", "move"))
        self.squeezed = squeezed
        if width is not None:
            self.widths.append(width)
        if self.volume.update(_number(values[VOLUME_Z]), cfg.volume_z_threshold) == UP:
            out.append(("volume_spike", "move"))
        for pattern in PATTERN_NAMES:
            value = values.get(f"cdl_{pattern}")
            if value:
                out.append(pattern_signal(pattern, int(value)))
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "crosses": {name: cross.to_state() for name, cross in self.crosses.items()},
            "rsi_high": self.rsi_high.to_state(), "rsi_low": self.rsi_low.to_state(),
            "upper": self.upper.to_state(), "lower": self.lower.to_state(), "volume": self.volume.to_state(),
            "widths": list(self.widths), "squeezed": self.squeezed,
        }

    @classmethod
    def from_state(cls, config: TechnicalConfig, state: dict[str, Any]) -> SignalDetector:
        detector = cls(config)
        detector.crosses = {name: Crossover.from_state(value) for name, value in state["crosses"].items()}
        for name in ("rsi_high", "rsi_low", "upper", "lower", "volume"):
            setattr(detector, name, Crossover.from_state(state[name]))
        detector.widths = deque(state["widths"], maxlen=config.squeeze_lookback)
        detector.squeezed = state["squeezed"]
        return detector


def _number(value: float | int | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
