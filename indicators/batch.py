"""Indicators over whole arrays: TA-Lib where it has the indicator, TA-Lib building blocks otherwise.

Every function takes 1-D float64 arrays of equal length (anything array-like is converted) and
returns arrays of the same length, NaN during warm-up. The value at index i depends only on
inputs up to i, so a prefix gives the same values as the whole array: that is what lets
`indicators.streaming` be checked against these functions candle by candle.

VWAP, volatility and z-score are not TA-Lib functions; they are built from TA_SUM and TA_VAR so
that their running sums round exactly as the streaming forms' do.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import talib

from indicators.streaming import check_period, check_positive

FloatArray = np.ndarray


class MACDSeries(NamedTuple):
    macd: FloatArray
    signal: FloatArray
    hist: FloatArray


class BandsSeries(NamedTuple):
    upper: FloatArray
    middle: FloatArray
    lower: FloatArray


class StochSeries(NamedTuple):
    k: FloatArray
    d: FloatArray


def as_series(name: str, values: object, length: int | None = None) -> FloatArray:
    """`values` as a contiguous 1-D float64 array (of `length`, if given), or a ValueError naming it."""
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} values but the other inputs have {length}")
    return array


def _hlc(high: object, low: object, close: object) -> tuple[FloatArray, FloatArray, FloatArray]:
    h = as_series("high", high)
    return h, as_series("low", low, len(h)), as_series("close", close, len(h))


def sma(close: object, period: int = 20) -> FloatArray:
    return talib.SMA(as_series("close", close), timeperiod=check_period("period", period))


def ema(close: object, period: int = 20) -> FloatArray:
    """EMA seeded with the SMA of the first `period` values (TA-Lib's classic seed)."""
    return talib.EMA(as_series("close", close), timeperiod=check_period("period", period))


def wma(close: object, period: int = 20) -> FloatArray:
    return talib.WMA(as_series("close", close), timeperiod=check_period("period", period))


def rsi(close: object, period: int = 14) -> FloatArray:
    return talib.RSI(as_series("close", close), timeperiod=check_period("period", period))


def macd(close: object, fast: int = 12, slow: int = 26, signal: int = 9) -> MACDSeries:
    """MACD line, signal and histogram; all three start at index `slow + signal - 2`."""
    fast, slow = check_period("fast", fast), check_period("slow", slow)
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
    line, sig, hist = talib.MACD(
        as_series("close", close), fastperiod=fast, slowperiod=slow,
        signalperiod=check_period("signal", signal, minimum=1),
    )
    return MACDSeries(line, sig, hist)


def bbands(close: object, period: int = 20, nbdev: float = 2.0) -> BandsSeries:
    """Bollinger Bands: SMA ± `nbdev` population standard deviations."""
    nbdev = check_positive("nbdev", nbdev)
    upper, middle, lower = talib.BBANDS(
        as_series("close", close), timeperiod=check_period("period", period),
        nbdevup=nbdev, nbdevdn=nbdev, matype=0,
    )
    return BandsSeries(upper, middle, lower)


def atr(high: object, low: object, close: object, period: int = 14) -> FloatArray:
    return talib.ATR(*_hlc(high, low, close), timeperiod=check_period("period", period))


def stoch(
    high: object, low: object, close: object, *, fastk: int = 5, slowk: int = 3, slowd: int = 3
) -> StochSeries:
    """Slow stochastic: %K is the SMA of fast %K, %D the SMA of %K (TA-Lib's defaults)."""
    k, d = talib.STOCH(
        *_hlc(high, low, close),
        fastk_period=check_period("fastk", fastk, minimum=1),
        slowk_period=check_period("slowk", slowk, minimum=1), slowk_matype=0,
        slowd_period=check_period("slowd", slowd, minimum=1), slowd_matype=0,
    )
    return StochSeries(k, d)


def adx(high: object, low: object, close: object, period: int = 14) -> FloatArray:
    return talib.ADX(*_hlc(high, low, close), timeperiod=check_period("period", period))


def obv(close: object, volume: object) -> FloatArray:
    c = as_series("close", close)
    return talib.OBV(c, as_series("volume", volume, len(c)))


def vwap(high: object, low: object, close: object, volume: object, period: int = 20) -> FloatArray:
    """Rolling VWAP of the typical price (h+l+c)/3 over `period` candles; NaN if the window has no volume.

    Rolling rather than anchored to a session: crypto has no session open to reset at.
    """
    h, lo, c = _hlc(high, low, close)
    v = as_series("volume", volume, len(h))
    period = check_period("period", period)
    typical = (h + lo + c) / 3.0
    pv = talib.SUM(typical * v, timeperiod=period)
    total = talib.SUM(v, timeperiod=period)
    zeros = talib.SUM((v == 0.0).astype(np.float64), timeperiod=period)
    empty = (zeros == period) | (total == 0.0)
    out = np.divide(pv, total, out=np.full(len(h), np.nan), where=~empty & ~np.isnan(total))
    out[empty] = np.nan
    return out


def volatility(close: object, period: int = 20, periods_per_year: float | None = None) -> FloatArray:
    """Population stdev of log returns over `period` candles (first value at index `period`).

    With `periods_per_year` (e.g. 365 for daily crypto candles, 8760 for hourly) it is
    annualised by sqrt(periods_per_year).
    """
    c = as_series("close", close)
    period = check_period("period", period)
    scale = None
    if periods_per_year is not None:
        scale = math.sqrt(check_positive("periods_per_year", periods_per_year))
    returns = np.full(len(c), np.nan)
    if len(c) > 1:
        returns[1:] = np.log(c[1:] / c[:-1])
    variance = talib.VAR(returns, timeperiod=period, nbdev=1.0)
    stdev = np.sqrt(np.maximum(variance, 0.0))  # TA_VAR floors at 0 itself; this keeps sqrt quiet if not
    return stdev if scale is None else stdev * scale


def zscore(close: object, period: int = 20) -> FloatArray:
    """(close - SMA) / population stdev over `period` closes; 0 where the window is flat."""
    c = as_series("close", close)
    period = check_period("period", period)
    mean = talib.SMA(c, timeperiod=period)
    variance = talib.VAR(c, timeperiod=period, nbdev=1.0)
    out = np.full(len(c), np.nan)
    ready = ~np.isnan(variance)
    positive = ready & (variance > 0.0)
    np.divide(c - mean, np.sqrt(variance, where=positive, out=np.ones(len(c))), out=out, where=positive)
    out[ready & ~positive] = 0.0
    return out
