"""Crossovers of two series (EMA 20 over EMA 50, RSI under 30, close over VWAP), batch and streaming.

`a` crosses up through `b` at the candle where a > b after a was last strictly below b; it
crosses down where a < b after a was last strictly above. Candles where a == b do not count as
either side: touching the other line and turning back is not a cross, and resting on it then
leaving on the other side is one cross, at the candle it leaves. A missing value (NaN, or None
in streaming, e.g. during warm-up) forgets the side, so the first candle after it never crosses.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from indicators.streaming import StreamingIndicator

UP, DOWN, NONE = 1, -1, 0


def cross(a: object, b: object) -> np.ndarray:
    """+1 where `a` crosses up through `b`, -1 where it crosses down, else 0 (int8, same length).

    `b` may be a scalar: a level such as 30 for the RSI.
    """
    a_values = np.asarray(a, dtype=np.float64)
    if a_values.ndim != 1:
        raise ValueError(f"a must be one-dimensional, got shape {a_values.shape}")
    try:
        b_values = np.broadcast_to(np.asarray(b, dtype=np.float64), a_values.shape)
    except ValueError:
        raise ValueError(f"b must be a number or have a's length {len(a_values)}") from None
    side = np.where(a_values > b_values, 1.0, np.where(a_values < b_values, -1.0, 0.0))
    missing = np.isnan(a_values) | np.isnan(b_values)
    side[missing] = np.nan
    segment = np.cumsum(missing)  # a missing value starts a new stretch; sides never carry across it
    strict = pd.Series(np.where(side == 0.0, np.nan, side))
    last_side = strict.where(~missing).groupby(segment).ffill()
    before = last_side.groupby(segment).shift(1).to_numpy()
    out = np.zeros(len(a_values), dtype=np.int8)
    out[(side == 1.0) & (before == -1.0)] = UP
    out[(side == -1.0) & (before == 1.0)] = DOWN
    return out


def cross_up(a: object, b: object) -> np.ndarray:
    """True where `a` crosses up through `b`."""
    return cross(a, b) == UP


def cross_down(a: object, b: object) -> np.ndarray:
    """True where `a` crosses down through `b`."""
    return cross(a, b) == DOWN


class Crossover(StreamingIndicator):
    """The streaming form of `cross`: `update(a, b)` is +1, -1 or 0 for the newest candle."""

    __slots__ = ("_side",)
    _fields = ("_side",)

    def __init__(self) -> None:
        self._side: int | None = None  # the last strict side of a against b, None after a gap

    def update(self, a: float | None, b: float | None) -> int:
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            self._side = None
            return NONE
        if a > b:
            crossed = UP if self._side == DOWN else NONE
            self._side = UP
            return crossed
        if a < b:
            crossed = DOWN if self._side == UP else NONE
            self._side = DOWN
            return crossed
        return NONE
