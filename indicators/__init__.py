"""Pure technical analysis: batch (TA-Lib) and incremental indicators, candlestick patterns.

The public surface:

- `indicators.batch`: one function per indicator over whole arrays (`sma`, `ema`, `wma`, `rsi`,
  `macd`, `bbands`, `atr`, `stoch`, `adx`, `obv`, `vwap`, `volatility`, `zscore`).
- `indicators.streaming`: the same indicators one candle at a time (`SMA`, `EMA`, ...), O(1)
  per candle, with `to_state()` / `from_state()`; equal to the batch values to the bit.
- `indicators.patterns`: `detect_patterns` (TA-Lib CDL functions) and `PatternDetector`.
- `indicators.catalog`: named indicator sets (`rsi_14`, `macd_12_26_9`, `cdl_hammer`):
  `compute_batch`, `compute_streaming` and `StreamingIndicatorSet`, the API agents use.
- `indicators.crossover` (`cross`, `cross_up`, `cross_down`, `Crossover`) and
  `indicators.fibonacci` (`fibonacci_levels`).

Nothing here does I/O, reads the clock or imports a broker client.
"""

from indicators.catalog import (
    DEFAULT_INDICATORS,
    IndicatorSpec,
    StreamingIndicatorSet,
    compute_batch,
    compute_streaming,
    parse_indicator,
    parse_indicators,
)
from indicators.crossover import Crossover, cross, cross_down, cross_up
from indicators.fibonacci import FibonacciLevels, fibonacci_levels
from indicators.patterns import PATTERN_NAMES, PatternDetector, detect_patterns

__all__ = [
    "DEFAULT_INDICATORS",
    "PATTERN_NAMES",
    "Crossover",
    "FibonacciLevels",
    "IndicatorSpec",
    "PatternDetector",
    "StreamingIndicatorSet",
    "compute_batch",
    "compute_streaming",
    "cross",
    "cross_down",
    "cross_up",
    "detect_patterns",
    "fibonacci_levels",
    "parse_indicator",
    "parse_indicators",
]
