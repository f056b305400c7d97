"""Fibonacci retracement and extension levels of a swing.

For an up swing (price went from `swing_low` to `swing_high`), a retracement of r is where a
pullback of r times the swing would end, `high - r * (high - low)`, and an extension of e is
where a continuation would reach measured from the swing's start, `low + e * (high - low)`.
A down swing mirrors both: retracements `low + r * (high - low)`, extensions
`high - e * (high - low)`. Example: low 100, high 200, up: the 0.618 retracement is 138.2 and
the 1.618 extension 261.8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RETRACEMENTS: tuple[float, ...] = (0.236, 0.382, 0.5, 0.618, 0.786)
EXTENSIONS: tuple[float, ...] = (1.272, 1.618, 2.618)

Direction = Literal["up", "down"]


@dataclass(frozen=True)
class FibonacciLevels:
    """The levels of one swing, each as {ratio: price}."""

    swing_high: float
    swing_low: float
    direction: Direction
    retracements: dict[float, float]
    extensions: dict[float, float]


def fibonacci_levels(
    swing_high: float,
    swing_low: float,
    direction: Direction = "up",
    retracements: Sequence[float] = RETRACEMENTS,
    extensions: Sequence[float] = EXTENSIONS,
) -> FibonacciLevels:
    """Retracement and extension prices of the swing between `swing_low` and `swing_high`."""
    for name, value in (("swing_high", swing_high), ("swing_low", swing_low)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if swing_high <= swing_low:
        raise ValueError(f"swing_high ({swing_high}) must be above swing_low ({swing_low})")
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    for ratio in (*retracements, *extensions):
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not (0 < ratio < math.inf):
            raise ValueError(f"Fibonacci ratios must be positive numbers, got {ratio!r}")
    high, low = float(swing_high), float(swing_low)
    span = high - low
    if direction == "up":
        retraced = {ratio: high - ratio * span for ratio in retracements}
        extended = {ratio: low + ratio * span for ratio in extensions}
    else:
        retraced = {ratio: low + ratio * span for ratio in retracements}
        extended = {ratio: high - ratio * span for ratio in extensions}
    return FibonacciLevels(high, low, direction, retraced, extended)
