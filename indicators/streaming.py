"""Incremental indicators: one object per series, O(1) work per candle, state that fits in JSON.

Each class mirrors the TA-Lib routine of the same name operation for operation: same seeds,
same running sums, same order of additions, `fma` where TA-Lib fuses a multiply-add, and the
same rebuilds of the running sums on the same candles (TA-Lib 0.8 rebuilds WMA's sums every
8·period candles, and re-anchors its variance when the subtraction would cancel, when an
outlier leaves the window, or every 32·period candles). So after every candle the value
equals `indicators.batch` on the same prefix to the last bit, not just closely. That matters
more than it sounds: a value near zero (a MACD histogram at a cross, a z-score at the mean)
keeps no relative accuracy once two implementations round differently.

The arithmetic copied is TA-Lib C 0.8.1's (the ta-lib 0.8.2 wheel), checked by
tests/indicators against real candles; another TA-Lib release may round differently in the
last bits (its changelog reorders several Wilder steps) and those tests will say so. TA-Lib's
global "unstable period" and compatibility settings are assumed to be at their defaults.

`update(...)` returns None until the indicator is warmed up, then its value (a NamedTuple for
several outputs). `to_state()` is a JSON-serialisable dict and `from_state(state)` rebuilds an
object that continues exactly where the snapshot was taken.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar, NamedTuple, Self

import numpy as np

from indicators.fma import fma

# TA-Lib's TA_IS_ZERO / TA_IS_ZERO_OR_NEG band (ta_utility.h, TA_EPSILON).
TA_EPSILON = 1e-14


class MACDValue(NamedTuple):
    macd: float
    signal: float
    hist: float


class BandsValue(NamedTuple):
    upper: float
    middle: float
    lower: float


class StochValue(NamedTuple):
    k: float
    d: float


def check_positive(name: str, value: float) -> float:
    """`value` as a positive finite float, or a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_period(name: str, value: int, minimum: int = 2) -> int:
    """`value` as a period, or a ValueError naming the parameter and what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class StreamingIndicator:
    """Snapshot and restore for the indicators below: parameters plus the fields that change."""

    __slots__ = ()
    _params: ClassVar[tuple[str, ...]] = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue: `{"type", "params", "fields"}`, JSON-serialisable."""
        return {
            "type": type(self).__name__,
            "params": {name: getattr(self, name) for name in self._params},
            "fields": {name.lstrip("_"): _dump(getattr(self, name)) for name in self._fields},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """The indicator a `to_state()` snapshot describes; a wrong or incomplete one is a ValueError."""
        if not isinstance(state, dict) or state.get("type") != cls.__name__:
            found = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state is not a {cls.__name__} snapshot (type {found!r})")
        try:
            restored = cls(**state["params"])
            fields = state["fields"]
            for name in cls._fields:
                setattr(restored, name, _load(getattr(restored, name), fields[name.lstrip("_")]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{cls.__name__} state is incomplete or malformed: {exc}") from exc
        return restored


def _dump(value: Any) -> Any:
    if isinstance(value, StreamingIndicator):
        return value.to_state()
    if isinstance(value, deque):
        return [list(item) if isinstance(item, tuple) else item for item in value]
    return value


def _load(template: Any, data: Any) -> Any:
    if isinstance(template, StreamingIndicator):
        return type(template).from_state(data)
    if isinstance(template, deque):
        items = (tuple(item) if isinstance(item, list) else item for item in data)
        return deque(items, maxlen=template.maxlen)
    return data


class SMA(StreamingIndicator):
    """Simple moving average (TA_SMA): a running total, added to before and trimmed after each output."""

    __slots__ = ("_total", "_window", "period")
    _params = ("period",)
    _fields = ("_total", "_window")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("period", period)
        self._total = 0.0
        self._window: deque[float] = deque()  # the values still inside _total

    def update(self, value: float) -> float | None:
        self._total += value
        self._window.append(value)
        if len(self._window) < self.period:
            return None
        out = self._total / self.period
        self._total -= self._window.popleft()
        return out


class EMA(StreamingIndicator):
    """Exponential moving average (TA_EMA): seeded with the SMA of the first `period` values."""

    __slots__ = ("_count", "_k", "_total", "_value", "period")
    _params = ("period",)
    _fields = ("_count", "_total", "_value")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("period", period)
        self._k = 2.0 / (self.period + 1)
        self._count = 0
        self._total = 0.0
        self._value: float | None = None

    def update(self, value: float) -> float | None:
        if self._value is not None:
            self._value = fma(value - self._value, self._k, self._value)
            return self._value
        self._total += value
        self._count += 1
        if self._count < self.period:
            return None
        self._value = self._total / self.period
        return self._value


class WMA(StreamingIndicator):
    """Linearly weighted moving average (TA_WMA): a running sum and a running weighted sum.

    TA-Lib rebuilds both sums from the window every `8 * period` candles so their rounding
    residue stays bounded; this does the same on the same candles.
    """

    __slots__ = ("_bars", "_divider", "_sub", "_sum", "_trailing", "_window", "period")
    _params = ("period",)
    _fields = ("_bars", "_sub", "_sum", "_trailing", "_window")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("period", period)
        self._divider = float(self.period) * (self.period + 1) / 2.0
        self._sub = 0.0  # sum of the window
        self._sum = 0.0  # weighted sum of the window
        self._trailing = 0.0  # the value that left the window, subtracted one candle late
        self._bars = 8 * self.period  # candles until the next rebuild
        self._window: deque[float] = deque()

    def update(self, value: float) -> float | None:
        window = self._window
        window.append(value)
        period = self.period
        if len(window) < period:
            self._sub += value
            self._sum += value * len(window)
            return None
        self._sub += value
        self._sub -= self._trailing
        self._sum += value * period
        self._bars -= 1
        if self._bars <= 0:
            self._bars = 8 * period
            self._sub = self._sum = 0.0
            for weight, item in enumerate(window, start=1):
                self._sub += item
                self._sum += item * weight
        self._trailing = window.popleft()
        out = self._sum / self._divider
        self._sum -= self._sub
        return out


class RSI(StreamingIndicator):
    """Relative strength index (TA_RSI): Wilder's averages of gains and losses, scaled by 1/period."""

    __slots__ = ("_count", "_gain", "_inv", "_loss", "_prev", "period")
    _params = ("period",)
    _fields = ("_count", "_gain", "_loss", "_prev")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("period", period)
        self._inv = 1.0 / self.period
        self._prev: float | None = None
        self._count = 0  # changes seen, up to period
        self._gain = 0.0
        self._loss = 0.0

    def update(self, value: float) -> float | None:
        if self._prev is None:
            self._prev = value
            return None
        change = value - self._prev
        self._prev = value
        gain = change if change > 0.0 else 0.0
        if self._count < self.period:
            self._gain += gain
            self._loss += gain - change
            self._count += 1
            if self._count < self.period:
                return None
        else:
            self._loss *= self.period - 1
            self._gain *= self.period - 1
            self._gain += gain
            self._loss += gain - change
        self._loss *= self._inv
        self._gain *= self._inv
        total = self._gain + self._loss
        return 100.0 * (self._gain / total) if total > 0.0 else 0.0


class MACD(StreamingIndicator):
    """MACD line, signal and histogram (TA_MACD).

    TA-Lib aligns the two EMAs: both produce their first value at index `slow - 1`, so the fast
    EMA is seeded with the SMA of the `fast` values ending there, not of the first `fast` values.
    The signal EMA is seeded with the SMA of the first `signal` MACD values; every output starts
    at index `slow + signal - 2`.
    """

    __slots__ = (
        "_fast", "_k_fast", "_k_signal", "_k_slow", "_seed", "_signal", "_signal_count",
        "_signal_total", "_slow", "fast", "signal", "slow",
    )
    _params = ("fast", "slow", "signal")
    _fields = ("_fast", "_seed", "_signal", "_signal_count", "_signal_total", "_slow")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast = check_period("fast", fast)
        self.slow = check_period("slow", slow)
        self.signal = check_period("signal", signal, minimum=1)
        if self.fast >= self.slow:
            raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
        self._k_fast = 2.0 / (self.fast + 1)
        self._k_slow = 2.0 / (self.slow + 1)
        self._k_signal = 2.0 / (self.signal + 1)
        self._seed: deque[float] = deque()  # the first `slow` values, until both EMAs are seeded
        self._fast: float | None = None
        self._slow: float | None = None
        self._signal_total = 0.0
        self._signal_count = 0
        self._signal: float | None = None

    def update(self, value: float) -> MACDValue | None:
        if self._slow is None or self._fast is None:
            self._seed.append(value)
            if len(self._seed) < self.slow:
                return None
            self._slow = _sequential_sum(self._seed) / self.slow
            self._fast = _sequential_sum(list(self._seed)[self.slow - self.fast:]) / self.fast
            self._seed.clear()
        else:
            self._slow = fma(value - self._slow, self._k_slow, self._slow)
            self._fast = fma(value - self._fast, self._k_fast, self._fast)
        macd = self._fast - self._slow
        if self._signal is None:
            self._signal_total += macd
            self._signal_count += 1
            if self._signal_count < self.signal:
                return None
            self._signal = self._signal_total / self.signal
        else:
            self._signal = fma(macd - self._signal, self._k_signal, self._signal)
        return MACDValue(macd, self._signal, macd - self._signal)


def _sequential_sum(values: Any) -> float:
    """Left-to-right sum from 0.0, the order TA-Lib's seeding loops add in."""
    total = 0.0
    for value in values:
        total += value
    return total


class WindowStats(StreamingIndicator):
    """Mean and population variance of the last `period` values, as TA_SMA and TA_VAR compute them.

    The mean is the SMA's running total over `period`. The variance is TA-Lib's
    cancellation-free form: running sums of deviations from a shift near the window, so
    `mean(x²) - mean(x)²` never subtracts two huge numbers (BTC at 60,000 squared is 3.6e9; a
    flat hour's variance is 1). The shift is re-anchored to the window mean, and both sums are
    rebuilt from the window, when the subtraction would lose digits, when a large value
    leaves, and at least every `32 * period` values; a variance below 1e-12 of the mean squared
    deviation after a rebuild is rounding noise and is reported as 0.
    """

    __slots__ = ("_bars", "_inv", "_shift", "_sum", "_total1", "_total2", "_window", "period")
    _params = ("period",)
    _fields = ("_bars", "_shift", "_sum", "_total1", "_total2", "_window")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("period", period)
        self._inv = 1.0 / self.period
        self._sum = 0.0  # the SMA's running total
        self._shift: float | None = None  # deviations are measured from here
        self._total1 = 0.0  # sum of (x - shift)
        self._total2 = 0.0  # sum of (x - shift)²
        self._bars = 32 * self.period  # values until the next forced rebuild
        self._window: deque[float] = deque()

    def update(self, value: float) -> tuple[float, float] | None:
        """(mean, variance) of the window ending with `value`, or None while it fills."""
        window = self._window
        window.append(value)
        self._sum += value
        if self._shift is None:
            self._shift = value
        deviation = value - self._shift
        self._total1 += deviation
        self._total2 += deviation * deviation
        if len(window) < self.period:
            return None
        inv = self._inv
        mean = self._sum / self.period
        centred = self._total1 * inv
        variance = self._total2 * inv - centred * centred
        trailing = window[0]
        self._sum -= trailing
        deviation = trailing - self._shift
        self._total1 -= deviation
        deviation *= deviation
        self._total2 -= deviation
        self._bars -= 1
        if variance < 1e-6 * (self._total2 * inv) or deviation > 1e6 * self._total2 or self._bars <= 0:
            variance = self._rebuild()
        window.popleft()
        return mean, variance

    def _rebuild(self) -> float:
        """Re-anchor the shift at the window mean and redo both sums from the window (var.c's reseed)."""
        inv = self._inv
        self._bars = 32 * self.period
        total = 0.0
        for item in self._window:
            total += item
        shift = self._shift = total * inv
        total1 = total2 = 0.0
        for item in self._window:
            deviation = item - shift
            total1 += deviation
            total2 += deviation * deviation
        centred = total1 * inv
        variance = total2 * inv - centred * centred
        if variance < 1e-12 * (total2 * inv):
            variance = 0.0
        deviation = self._window[0] - shift
        self._total1 = total1 - deviation
        self._total2 = total2 - deviation * deviation
        return variance


class BollingerBands(StreamingIndicator):
    """Bollinger Bands over an SMA (TA_BBANDS with matype 0): middle ± `nbdev` population stdevs."""

    __slots__ = ("_stats", "nbdev", "period")
    _params = ("period", "nbdev")
    _fields = ("_stats",)

    def __init__(self, period: int = 20, nbdev: float = 2.0) -> None:
        self.period = check_period("period", period)
        self.nbdev = check_positive("nbdev", nbdev)
        self._stats = WindowStats(self.period)

    def update(self, value: float) -> BandsValue | None:
        stats = self._stats.update(value)
        if stats is None:
            return None
        middle, variance = stats
        width = (math.sqrt(variance) if variance != 0.0 else 0.0) * self.nbdev
        return BandsValue(middle + width, middle, middle - width)


def true_range(high: float, low: float, prev_close: float) -> float:
    """TA-Lib's true range: the largest of high-low, |prev_close-high| and |prev_close-low|."""
    return max(high - low, abs(prev_close - high), abs(prev_close - low))


class ATR(StreamingIndicator):
    """Average true range (TA_ATR): Wilder smoothing seeded with the SMA of the first `period` TRs."""

    __slots__ = ("_alpha", "_atr", "_beta", "_count", "_prev_close", "_total", "period")
    _params = ("period",)
    _fields = ("_atr", "_count", "_prev_close", "_total")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("period", period)
        # TA-Lib's two-coefficient Wilder step; alpha derived from beta so alpha + beta == 1 exactly.
        self._beta = (self.period - 1) / self.period
        self._alpha = 1.0 - self._beta
        self._prev_close: float | None = None
        self._count = 0
        self._total = 0.0
        self._atr: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        prev_close, self._prev_close = self._prev_close, close
        if prev_close is None:
            return None
        tr = true_range(high, low, prev_close)
        if self._atr is not None:
            self._atr = fma(self._beta, self._atr, self._alpha * tr)
            return self._atr
        self._total += tr
        self._count += 1
        if self._count < self.period:
            return None
        self._atr = self._total / self.period
        return self._atr


class _Extreme(StreamingIndicator):
    """Highest (or lowest) of the last `period` values: a monotonic deque, amortised O(1)."""

    __slots__ = ("_count", "_queue", "highest", "period")
    _params = ("period", "highest")
    _fields = ("_count", "_queue")

    def __init__(self, period: int, highest: bool) -> None:
        self.period = period
        self.highest = highest
        self._count = 0
        self._queue: deque[tuple[int, float]] = deque()  # (index, value), values monotonic

    def update(self, value: float) -> float:
        index = self._count
        self._count += 1
        queue = self._queue
        if self.highest:
            while queue and queue[-1][1] <= value:
                queue.pop()
        else:
            while queue and queue[-1][1] >= value:
                queue.pop()
        queue.append((index, value))
        if queue[0][0] <= index - self.period:
            queue.popleft()
        return queue[0][1]


class Stochastic(StreamingIndicator):
    """Slow stochastic (TA_STOCH with SMA smoothing): %K = SMA(fast %K), %D = SMA(%K)."""

    __slots__ = ("_count", "_high", "_low", "_slowd", "_slowk", "fastk", "slowd", "slowk")
    _params = ("fastk", "slowk", "slowd")
    _fields = ("_count", "_high", "_low", "_slowd", "_slowk")

    def __init__(self, fastk: int = 5, slowk: int = 3, slowd: int = 3) -> None:
        self.fastk = check_period("fastk", fastk, minimum=1)
        self.slowk = check_period("slowk", slowk, minimum=1)
        self.slowd = check_period("slowd", slowd, minimum=1)
        self._count = 0
        self._high = _Extreme(self.fastk, highest=True)
        self._low = _Extreme(self.fastk, highest=False)
        self._slowk = _MovingAverage(self.slowk)
        self._slowd = _MovingAverage(self.slowd)

    def update(self, high: float, low: float, close: float) -> StochValue | None:
        highest = self._high.update(high)
        lowest = self._low.update(low)
        self._count += 1
        if self._count < self.fastk:
            return None
        spread = highest - lowest
        # A window flat to within rounding of its own prices is flat (TA_IS_ZERO_SCALED).
        flat = abs(spread) <= TA_EPSILON * (abs(highest) + abs(lowest))
        fast = 0.0 if flat else (close - lowest) / spread * 100.0
        slow_k = self._slowk.update(fast)
        if slow_k is None:
            return None
        slow_d = self._slowd.update(slow_k)
        if slow_d is None:
            return None
        return StochValue(slow_k, slow_d)


class _MovingAverage(SMA):
    """TA_MA with an SMA, which also accepts a period of 1 (TA-Lib then copies the input)."""

    __slots__ = ()

    def __init__(self, period: int = 3) -> None:
        if period == 1:
            self.period = 1
            self._total = 0.0
            self._window = deque()
        else:
            super().__init__(period)

    def update(self, value: float) -> float | None:
        if self.period == 1:
            return value
        return super().update(value)


class ADX(StreamingIndicator):
    """Average directional index (TA_ADX): Wilder-smoothed +DM, -DM and TR, then DX averaged.

    First value at index `2 * period - 1`.
    """

    __slots__ = (
        "_adx", "_count", "_minus_dm", "_plus_dm", "_prev_close", "_prev_high", "_prev_low",
        "_sum_dx", "_tr", "period",
    )
    _params = ("period",)
    _fields = (
        "_adx", "_count", "_minus_dm", "_plus_dm", "_prev_close", "_prev_high", "_prev_low",
        "_sum_dx", "_tr",
    )

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("period", period)
        self._count = 0  # candles seen
        self._prev_high = self._prev_low = self._prev_close = 0.0
        self._plus_dm = self._minus_dm = self._tr = 0.0
        self._sum_dx = 0.0
        self._adx: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        index = self._count
        self._count += 1
        period = self.period
        if index == 0:
            self._prev_high, self._prev_low, self._prev_close = high, low, close
            return None
        diff_plus = high - self._prev_high
        diff_minus = self._prev_low - low
        self._prev_high = high
        self._prev_low = low
        tr = true_range(high, low, self._prev_close)
        self._prev_close = close
        if index >= period:  # past the plain sums: Wilder's smoothing
            self._minus_dm -= self._minus_dm / period
            self._plus_dm -= self._plus_dm / period
        if diff_minus > 0.0 and diff_plus < diff_minus:
            self._minus_dm += diff_minus
        elif diff_plus > 0.0 and diff_plus > diff_minus:
            self._plus_dm += diff_plus
        if index < period:
            self._tr += tr
            return None
        self._tr = self._tr - (self._tr / period) + tr
        dx = self._dx()
        if index < 2 * period - 1:
            if dx is not None:
                self._sum_dx += dx
            return None
        if index == 2 * period - 1:
            if dx is not None:
                self._sum_dx += dx
            self._adx = self._sum_dx / period
        elif dx is not None and self._adx is not None:
            self._adx = ((self._adx * (period - 1)) + dx) / period
        return self._adx

    def _dx(self) -> float | None:
        if not self._tr > 0.0:
            return None
        minus_di = 100.0 * (self._minus_dm / self._tr)
        plus_di = 100.0 * (self._plus_dm / self._tr)
        total = minus_di + plus_di
        if -TA_EPSILON < total < TA_EPSILON:
            return None
        return 100.0 * (abs(minus_di - plus_di) / total)


class OBV(StreamingIndicator):
    """On-balance volume (TA_OBV): starts at the first candle's volume, no warm-up."""

    __slots__ = ("_obv", "_prev_close")
    _fields = ("_obv", "_prev_close")

    def __init__(self) -> None:
        self._obv: float | None = None
        self._prev_close = 0.0

    def update(self, close: float, volume: float) -> float:
        if self._obv is None:
            self._obv = volume
        elif close > self._prev_close:
            self._obv += volume
        elif close < self._prev_close:
            self._obv -= volume
        self._prev_close = close
        return self._obv


class _RollingSum(StreamingIndicator):
    """TA_SUM's running total: add, read, then drop the value leaving the window."""

    __slots__ = ("_total", "_window", "period")
    _params = ("period",)
    _fields = ("_total", "_window")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("period", period)
        self._total = 0.0
        self._window: deque[float] = deque()

    def update(self, value: float) -> float | None:
        self._total += value
        self._window.append(value)
        if len(self._window) < self.period:
            return None
        out = self._total
        self._total -= self._window.popleft()
        return out


class VWAP(StreamingIndicator):
    """Volume-weighted average of the typical price (h+l+c)/3 over the last `period` candles.

    Rolling, not session-anchored: crypto trades around the clock, so there is no session open
    to reset at, and a rolling window keeps the value comparable over time. NaN when the window
    traded nothing.
    """

    __slots__ = ("_pv", "_volume", "_zeros", "period")
    _params = ("period",)
    _fields = ("_pv", "_volume", "_zeros")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("period", period)
        self._pv = _RollingSum(self.period)
        self._volume = _RollingSum(self.period)
        self._zeros = _RollingSum(self.period)  # candles without volume in the window (exact: 0/1)

    def update(self, high: float, low: float, close: float, volume: float) -> float | None:
        typical = (high + low + close) / 3.0
        pv = self._pv.update(typical * volume)
        total = self._volume.update(volume)
        zeros = self._zeros.update(1.0 if volume == 0.0 else 0.0)
        if pv is None or total is None:
            return None
        if zeros == self.period or total == 0.0:
            return math.nan
        return pv / total


class Volatility(StreamingIndicator):
    """Population stdev of log returns over `period` candles, times sqrt(periods_per_year) if given.

    The first value needs `period` returns, so `period + 1` candles. The log is numpy's, the
    one the batch form applies to whole arrays, so both agree to the bit.
    """

    __slots__ = ("_prev", "_scale", "_stats", "period", "periods_per_year")
    _params = ("period", "periods_per_year")
    _fields = ("_prev", "_stats")

    def __init__(self, period: int = 20, periods_per_year: float | None = None) -> None:
        self.period = check_period("period", period)
        self.periods_per_year = (
            None if periods_per_year is None else check_positive("periods_per_year", periods_per_year)
        )
        self._scale = None if self.periods_per_year is None else math.sqrt(self.periods_per_year)
        self._prev: float | None = None
        self._stats = WindowStats(self.period)

    def update(self, close: float) -> float | None:
        prev, self._prev = self._prev, close
        if prev is None:
            return None
        stats = self._stats.update(float(np.log(close / prev)))
        if stats is None:
            return None
        stdev = math.sqrt(stats[1]) if stats[1] > 0.0 else 0.0
        return stdev if self._scale is None else stdev * self._scale


class ZScore(StreamingIndicator):
    """(close - SMA) / population stdev over the last `period` closes; 0 when the window is flat."""

    __slots__ = ("_stats", "period")
    _params = ("period",)
    _fields = ("_stats",)

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("period", period)
        self._stats = WindowStats(self.period)

    def update(self, close: float) -> float | None:
        stats = self._stats.update(close)
        if stats is None:
            return None
        mean, variance = stats
        if variance == 0.0:
            return 0.0
        return (close - mean) / math.sqrt(variance)
