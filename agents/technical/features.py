"""The decision tree's inputs: scale-free numbers derived from one candle's indicators, causally.

One definition, `_features`, serves both uses: training applies it to whole columns from
`indicators.compute_batch` (`feature_matrix`); the live agent applies it to the plain floats of
its `StreamingIndicatorSet` (`feature_row`). The two indicator forms agree to the bit, and each
feature is a few IEEE-754 operations that numpy and Python floats round identically, so a live
feature equals the training feature of the same candle exactly (tests/technical checks it on
real candles) — a model never meets inputs computed differently from those it learned on.

Every feature at candle t uses candles up to t only (indicators are causal; the lagged closes
look back). Prices enter as ratios, so one tree serves every symbol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from indicators import batch

VOLUME_Z_PERIOD = 20
VOLUME_Z = f"volume_zscore_{VOLUME_Z_PERIOD}"
RETURN_LAGS = (1, 24)

# What feature_matrix reads besides the candle itself (all in indicators.DEFAULT_INDICATORS).
INDICATOR_COLUMNS = (
    "rsi_14", "macd_12_26_9", "macd_hist_12_26_9", "ema_20", "ema_50", "sma_50", "bb_upper_20_2",
    "bb_middle_20_2", "bb_lower_20_2", "atr_14", "adx_14", "stoch_k_5_3_3", "stoch_d_5_3_3",
    "volatility_20", "zscore_20", "vwap_20",
)

FEATURES = (
    "rsi_14", "macd_rel", "macd_hist_rel", "close_vs_ema_20", "ema_20_vs_50", "close_vs_sma_50",
    "bb_position", "bb_width", "atr_rel", "adx_14", "stoch_k", "stoch_d", "volatility_20", "zscore_20",
    "volume_z", "close_vs_vwap", "return_1", "return_24",
)


def _ratio(a: Any, b: Any) -> Any:
    """a / b, NaN where b is 0 (a flat window): for columns (numpy) and for plain floats alike."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        out = np.full(np.shape(a), np.nan)
        np.divide(a, b, out=out, where=b != 0)
        return out
    return a / b if b != 0 else math.nan


def _features(c: Mapping[str, Any]) -> tuple[Any, ...]:
    """FEATURES, in order, from columns or from floats (NaN while an input is warming up)."""
    close = c["close"]
    band = c["bb_upper_20_2"] - c["bb_lower_20_2"]
    return (
        c["rsi_14"],
        _ratio(c["macd_12_26_9"], close),
        _ratio(c["macd_hist_12_26_9"], close),
        _ratio(close - c["ema_20"], close),
        _ratio(c["ema_20"] - c["ema_50"], close),
        _ratio(close - c["sma_50"], close),
        _ratio(close - c["bb_lower_20_2"], band),
        _ratio(band, c["bb_middle_20_2"]),
        _ratio(c["atr_14"], close),
        c["adx_14"],
        c["stoch_k_5_3_3"],
        c["stoch_d_5_3_3"],
        c["volatility_20"],
        c["zscore_20"],
        c[VOLUME_Z],
        _ratio(close - c["vwap_20"], close),
        _ratio(close, c["close_lag_1"]) - 1.0,
        _ratio(close, c["close_lag_24"]) - 1.0,
    )


def feature_matrix(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows of FEATURES (float64) from equal-length columns: INDICATOR_COLUMNS, `close`, VOLUME_Z and
    `close_lag_N` for N in RETURN_LAGS."""
    return np.column_stack([np.asarray(feature, dtype=np.float64) for feature in _features(columns)])


def batch_columns(candles: pd.DataFrame, indicators: pd.DataFrame) -> dict[str, np.ndarray]:
    """feature_matrix's inputs for a whole candle frame and its `compute_batch` indicators."""
    close = candles["close"].to_numpy(dtype=np.float64)
    columns = {name: indicators[name].to_numpy(dtype=np.float64) for name in INDICATOR_COLUMNS}
    columns["close"] = close
    columns[VOLUME_Z] = batch.zscore(candles["volume"].to_numpy(dtype=np.float64), VOLUME_Z_PERIOD)
    for lag in RETURN_LAGS:
        lagged = np.full(len(close), np.nan)
        lagged[lag:] = close[:-lag]
        columns[f"close_lag_{lag}"] = lagged
    return columns


def feature_row(
    values: Mapping[str, float | int | None], close: float, volume_z: float | None, closes: Sequence[float],
) -> list[float]:
    """FEATURES of one candle from its indicator values and the closes up to it (oldest first)."""
    def number(value: float | int | None) -> float:
        return math.nan if value is None else float(value)

    columns = {name: number(values[name]) for name in INDICATOR_COLUMNS}
    columns["close"] = float(close)
    columns[VOLUME_Z] = number(volume_z)
    for lag in RETURN_LAGS:
        columns[f"close_lag_{lag}"] = number(closes[-1 - lag] if len(closes) > lag else None)
    return [float(feature) for feature in _features(columns)]
