"""Candlestick patterns: TA-Lib's CDL functions in batch, the same rules candle by candle in streaming.

A TA-Lib pattern compares a candle with averages of earlier candles ("a short body is shorter
than the average body of the 10 candles before"). Those averages are running totals that
TA-Lib starts at the beginning of the array and carries to the end, so evaluating TA-Lib on a
trailing window of candles is not the same computation: the totals start somewhere else and
round differently, and a candle sitting exactly on a threshold can flip. `PatternDetector`
therefore re-implements each rule from TA-Lib's C source and keeps the running totals
exactly as TA-Lib does (same first candle, same order of additions), over a bounded window of
the last few candles: O(1) per candle and equal to the batch output on every candle.

Values are TA-Lib's: +100 bullish, -100 bearish, 0 none (engulfing also ±80 when the bodies
share an edge); None (batch: masked) before the pattern's lookback. TA-Lib's candle settings
are assumed to be its defaults (`CANDLE_SETTINGS`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import talib

from indicators.batch import as_series
from indicators.fma import fma
from indicators.streaming import StreamingIndicator

# Positions in a candle's feature tuple.
OPEN, HIGH, LOW, CLOSE, BODY, RANGE, SHADOWS, UPPER, LOWER = range(9)


class RangeType(IntEnum):
    """What a candle setting measures (TA_RangeType), as the feature index it reads."""

    REAL_BODY = BODY
    HIGH_LOW = RANGE
    SHADOWS = SHADOWS


@dataclass(frozen=True)
class CandleSetting:
    """TA_CandleSetting: average `range_type` over the `period` previous candles, times `factor`."""

    range_type: RangeType
    period: int
    factor: float


# TA-Lib's default candle settings (ta_global.c).
CANDLE_SETTINGS: dict[str, CandleSetting] = {
    "BodyLong": CandleSetting(RangeType.REAL_BODY, 10, 1.0),
    "BodyVeryLong": CandleSetting(RangeType.REAL_BODY, 10, 3.0),
    "BodyShort": CandleSetting(RangeType.REAL_BODY, 10, 1.0),
    "BodyDoji": CandleSetting(RangeType.HIGH_LOW, 10, 0.1),
    "ShadowLong": CandleSetting(RangeType.REAL_BODY, 0, 1.0),
    "ShadowVeryLong": CandleSetting(RangeType.REAL_BODY, 0, 2.0),
    "ShadowShort": CandleSetting(RangeType.SHADOWS, 10, 1.0),
    "ShadowVeryShort": CandleSetting(RangeType.HIGH_LOW, 10, 0.1),
    "Near": CandleSetting(RangeType.HIGH_LOW, 5, 0.2),
    "Far": CandleSetting(RangeType.HIGH_LOW, 5, 0.6),
    "Equal": CandleSetting(RangeType.HIGH_LOW, 5, 0.05),
}

Bars = Sequence[tuple[float, ...]]  # oldest first; bars[-1] is the candle being judged
Averages = Mapping[tuple[str, int], float]  # (setting, candles back) -> TA_CANDLEAVERAGE
Rule = Callable[[Bars, Averages, float], int]


@dataclass(frozen=True)
class Pattern:
    """One TA-Lib candlestick function: its lookback, the averages its rule reads, and the rule."""

    name: str
    function: str
    lookback: int
    averages: tuple[tuple[str, int], ...]
    rule: Rule


def features(open_: float, high: float, low: float, close: float) -> tuple[float, ...]:
    """The candle with the measures TA-Lib's macros compute (TA_REALBODY, TA_UPPERSHADOW, ...)."""
    white = close >= open_
    upper = high - (close if white else open_)
    lower = (open_ if white else close) - low
    return (open_, high, low, close, abs(close - open_), high - low, upper + lower, upper, lower)


def _color(bar: tuple[float, ...]) -> int:
    return 1 if bar[CLOSE] >= bar[OPEN] else -1


def _hammer(w: Bars, a: Averages, _: float) -> int:
    b, prev = w[-1], w[-2]
    hit = (
        b[BODY] < a["BodyShort", 0]
        and b[LOWER] > a["ShadowLong", 0]
        and b[UPPER] < a["ShadowVeryShort", 0]
        and min(b[CLOSE], b[OPEN]) <= prev[LOW] + a["Near", 1]
    )
    return 100 if hit else 0


def _inverted_hammer(w: Bars, a: Averages, _: float) -> int:
    b, prev = w[-1], w[-2]
    hit = (
        max(b[OPEN], b[CLOSE]) < min(prev[OPEN], prev[CLOSE])
        and b[BODY] < a["BodyShort", 0]
        and b[UPPER] > a["ShadowLong", 0]
        and b[LOWER] < a["ShadowVeryShort", 0]
    )
    return 100 if hit else 0


def _shooting_star(w: Bars, a: Averages, _: float) -> int:
    b, prev = w[-1], w[-2]
    hit = (
        min(b[OPEN], b[CLOSE]) > max(prev[OPEN], prev[CLOSE])
        and b[BODY] < a["BodyShort", 0]
        and b[UPPER] > a["ShadowLong", 0]
        and b[LOWER] < a["ShadowVeryShort", 0]
    )
    return -100 if hit else 0


def _doji(w: Bars, a: Averages, _: float) -> int:
    return 100 if w[-1][BODY] <= a["BodyDoji", 0] else 0


def _engulfing(w: Bars, _a: Averages, _p: float) -> int:
    b, prev = w[-1], w[-2]
    color, prev_color = _color(b), _color(prev)
    bullish = color == 1 and prev_color == -1 and (
        (b[CLOSE] >= prev[OPEN] and b[OPEN] < prev[CLOSE])
        or (b[CLOSE] > prev[OPEN] and b[OPEN] <= prev[CLOSE])
    )
    bearish = color == -1 and prev_color == 1 and (
        (b[OPEN] >= prev[CLOSE] and b[CLOSE] < prev[OPEN])
        or (b[OPEN] > prev[CLOSE] and b[CLOSE] <= prev[OPEN])
    )
    if not (bullish or bearish):
        return 0
    # Bodies sharing an edge engulf only "on one end" (Greg Morris): 80 instead of 100.
    return color * (100 if b[OPEN] != prev[CLOSE] and b[CLOSE] != prev[OPEN] else 80)


def _morning_star(w: Bars, a: Averages, penetration: float) -> int:
    b, star, first = w[-1], w[-2], w[-3]
    hit = (
        _color(first) == -1
        and _color(b) == 1
        and max(star[OPEN], star[CLOSE]) < min(first[OPEN], first[CLOSE])
        and b[CLOSE] > fma(first[BODY], penetration, first[CLOSE])  # TA-Lib fuses this one
        and first[BODY] > a["BodyLong", 2]
        and star[BODY] <= a["BodyShort", 1]
        and b[BODY] > a["BodyShort", 0]
    )
    return 100 if hit else 0


def _evening_star(w: Bars, a: Averages, penetration: float) -> int:
    b, star, first = w[-1], w[-2], w[-3]
    hit = (
        _color(first) == 1
        and _color(b) == -1
        and min(star[OPEN], star[CLOSE]) > max(first[OPEN], first[CLOSE])
        and b[CLOSE] < first[CLOSE] - first[BODY] * penetration
        and first[BODY] > a["BodyLong", 2]
        and star[BODY] <= a["BodyShort", 1]
        and b[BODY] > a["BodyShort", 0]
    )
    return -100 if hit else 0


def _three_white_soldiers(w: Bars, a: Averages, _: float) -> int:
    b, second, first = w[-1], w[-2], w[-3]
    hit = (
        _color(first) == 1
        and first[UPPER] < a["ShadowVeryShort", 2]
        and _color(second) == 1
        and second[UPPER] < a["ShadowVeryShort", 1]
        and _color(b) == 1
        and b[UPPER] < a["ShadowVeryShort", 0]
        and b[CLOSE] > second[CLOSE]
        and second[CLOSE] > first[CLOSE]
        and second[OPEN] > first[OPEN]
        and second[OPEN] <= first[CLOSE] + a["Near", 2]
        and b[OPEN] > second[OPEN]
        and b[OPEN] <= second[CLOSE] + a["Near", 1]
        and second[BODY] > first[BODY] - a["Far", 2]
        and b[BODY] > second[BODY] - a["Far", 1]
        and b[BODY] > a["BodyShort", 0]
    )
    return 100 if hit else 0


def _three_black_crows(w: Bars, a: Averages, _: float) -> int:
    b, second, first, before = w[-1], w[-2], w[-3], w[-4]
    hit = (
        _color(before) == 1
        and _color(first) == -1
        and _color(second) == -1
        and _color(b) == -1
        and second[OPEN] < first[OPEN]
        and second[OPEN] > first[CLOSE]
        and b[OPEN] < second[OPEN]
        and b[OPEN] > second[CLOSE]
        and before[HIGH] > first[CLOSE]
        and first[CLOSE] > second[CLOSE]
        and second[CLOSE] > b[CLOSE]
        and first[LOWER] < a["ShadowVeryShort", 2]
        and second[LOWER] < a["ShadowVeryShort", 1]
        and b[LOWER] < a["ShadowVeryShort", 0]
    )
    return -100 if hit else 0


def _period(setting: str) -> int:
    return CANDLE_SETTINGS[setting].period


PATTERNS: dict[str, Pattern] = {
    pattern.name: pattern
    for pattern in (
        Pattern(
            "hammer", "CDLHAMMER",
            max(_period("BodyShort"), _period("ShadowLong"), _period("ShadowVeryShort"), _period("Near")) + 1,
            (("BodyShort", 0), ("ShadowLong", 0), ("ShadowVeryShort", 0), ("Near", 1)), _hammer,
        ),
        Pattern(
            "inverted_hammer", "CDLINVERTEDHAMMER",
            max(_period("BodyShort"), _period("ShadowLong"), _period("ShadowVeryShort")) + 1,
            (("BodyShort", 0), ("ShadowLong", 0), ("ShadowVeryShort", 0)), _inverted_hammer,
        ),
        Pattern(
            "shooting_star", "CDLSHOOTINGSTAR",
            max(_period("BodyShort"), _period("ShadowLong"), _period("ShadowVeryShort")) + 1,
            (("BodyShort", 0), ("ShadowLong", 0), ("ShadowVeryShort", 0)), _shooting_star,
        ),
        Pattern("doji", "CDLDOJI", _period("BodyDoji"), (("BodyDoji", 0),), _doji),
        Pattern("engulfing", "CDLENGULFING", 2, (), _engulfing),
        Pattern(
            "morning_star", "CDLMORNINGSTAR", max(_period("BodyShort"), _period("BodyLong")) + 2,
            (("BodyLong", 2), ("BodyShort", 1), ("BodyShort", 0)), _morning_star,
        ),
        Pattern(
            "evening_star", "CDLEVENINGSTAR", max(_period("BodyShort"), _period("BodyLong")) + 2,
            (("BodyLong", 2), ("BodyShort", 1), ("BodyShort", 0)), _evening_star,
        ),
        Pattern(
            "three_white_soldiers", "CDL3WHITESOLDIERS",
            max(_period("ShadowVeryShort"), _period("BodyShort"), _period("Far"), _period("Near")) + 2,
            (
                ("ShadowVeryShort", 2), ("ShadowVeryShort", 1), ("ShadowVeryShort", 0), ("Near", 2),
                ("Near", 1), ("Far", 2), ("Far", 1), ("BodyShort", 0),
            ),
            _three_white_soldiers,
        ),
        Pattern(
            "three_black_crows", "CDL3BLACKCROWS", _period("ShadowVeryShort") + 3,
            (("ShadowVeryShort", 2), ("ShadowVeryShort", 1), ("ShadowVeryShort", 0)), _three_black_crows,
        ),
    )
}

PATTERN_NAMES: tuple[str, ...] = tuple(PATTERNS)
PENETRATED = frozenset({"morning_star", "evening_star"})  # the patterns that take `penetration`


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in names if name not in PATTERNS]
    if unknown:
        known = ", ".join(PATTERN_NAMES)
        raise ValueError(f"unknown candlestick pattern(s) {', '.join(unknown)}; known: {known}")
    if not names:
        raise ValueError("no candlestick pattern given")
    return tuple(names)


def _check_penetration(penetration: float) -> float:
    if isinstance(penetration, bool) or not (
        isinstance(penetration, int | float) and math.isfinite(penetration) and penetration >= 0
    ):
        raise ValueError(f"penetration must be a number >= 0, got {penetration!r}")
    return float(penetration)


def detect_patterns(
    open_: object, high: object, low: object, close: object, *,
    names: Sequence[str] = PATTERN_NAMES, penetration: float = 0.3,
) -> dict[str, np.ma.MaskedArray]:
    """TA-Lib's answer for each pattern over whole arrays, masked before the pattern's lookback."""
    o = as_series("open", open_)
    h, lo = as_series("high", high, len(o)), as_series("low", low, len(o))
    c = as_series("close", close, len(o))
    penetration = _check_penetration(penetration)
    out = {}
    for name in _check_names(names):
        pattern = PATTERNS[name]
        function = getattr(talib, pattern.function)
        options = {"penetration": penetration} if name in PENETRATED else {}
        values = function(o, h, lo, c, **options)
        mask = np.zeros(len(o), dtype=bool)
        mask[: pattern.lookback] = True
        out[name] = np.ma.MaskedArray(values.astype(np.int32, copy=False), mask=mask)
    return out


class PatternDetector(StreamingIndicator):
    """The streaming form of `detect_patterns`: one candle in, every pattern's value out.

    Keeps the last few candles (at most 13 with the default settings) and one running total
    per (setting, candles back, pattern lookback), started on the same candle TA-Lib starts it
    on; patterns with the same lookback share their totals, which TA-Lib computes identically.
    """

    __slots__ = ("_count", "_groups", "_plan", "_totals", "_totals_spec", "_window", "names", "penetration")
    _params = ("names", "penetration")
    _fields = ("_count", "_totals", "_window")

    def __init__(self, names: Sequence[str] = PATTERN_NAMES, penetration: float = 0.3) -> None:
        self.names = list(_check_names(names))
        self.penetration = _check_penetration(penetration)
        # One running total per (setting, back, lookback), in a fixed order (the state is a list).
        totals: dict[tuple[str, int, int], int] = {}
        # lookback -> the averages its patterns read: (key, slot, back, feature, period, factor, divisor)
        groups: dict[int, list[tuple[tuple[str, int], int | None, int, int, int, float, float]]] = {}
        depth = 4  # the oldest candle a rule reads (three black crows: 3 back)
        for name in self.names:
            pattern = PATTERNS[name]
            group = groups.setdefault(pattern.lookback, [])
            for setting, back in pattern.averages:
                period = CANDLE_SETTINGS[setting].period
                depth = max(depth, back + period + 1)
                slot = totals.setdefault((setting, back, pattern.lookback), len(totals)) if period else None
                spec = CANDLE_SETTINGS[setting]
                entry = (
                    (setting, back), slot, back, spec.range_type.value, spec.period, spec.factor,
                    2.0 if spec.range_type is RangeType.SHADOWS else 1.0,
                )
                if entry not in group:
                    group.append(entry)
        self._groups = sorted(groups.items())
        self._plan = [(name, PATTERNS[name].lookback, PATTERNS[name].rule) for name in self.names]
        self._totals_spec = [
            (slot, CANDLE_SETTINGS[setting].range_type.value, back, CANDLE_SETTINGS[setting].period, lookback)
            for (setting, back, lookback), slot in totals.items()
        ]
        self._count = 0
        self._totals: list[float] = [0.0] * len(totals)
        self._window: deque[tuple[float, ...]] = deque(maxlen=depth)

    def update(self, open_: float, high: float, low: float, close: float) -> dict[str, int | None]:
        index = self._count
        self._count += 1
        window = self._window
        window.append(features(open_, high, low, close))
        totals = self._totals
        for slot, feature, back, period, lookback in self._totals_spec:
            if index == lookback:  # TA-Lib's priming sum: the `period` ranges before, oldest first
                total = 0.0
                for offset in range(back + period, back, -1):
                    total += window[-1 - offset][feature]
                totals[slot] = total
        averages: dict[int, dict[tuple[str, int], float]] = {}
        for lookback, group in self._groups:
            if index < lookback:
                continue
            # TA_CANDLEAVERAGE: factor * (total / period, or the candle's own range) / divisor
            averages[lookback] = {
                key: factor * (window[-1 - back][feat] if slot is None else totals[slot] / period) / divisor
                for key, slot, back, feat, period, factor, divisor in group
            }
        penetration = self.penetration
        out: dict[str, int | None] = {}
        for name, lookback, rule in self._plan:
            out[name] = rule(window, averages[lookback], penetration) if index >= lookback else None
        for slot, feature, back, period, lookback in self._totals_spec:
            if index >= lookback:
                totals[slot] += window[-1 - back][feature] - window[-1 - back - period][feature]
        return out
