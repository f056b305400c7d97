"""Correctly rounded fused multiply-add: `a * b + c` with one rounding, as C's `fma()`.

TA-Lib 0.7+ computes EMA, MACD, ATR, Bollinger Bands and the morning-star rule with `fma()`.
Rounding once instead of twice changes the last bit of about one value in a thousand, and an EMA
carries that bit forward forever; a streaming indicator that must equal TA-Lib to the bit needs
the same operation. `math.fma` only arrives in Python 3.13.
"""

from __future__ import annotations

import math
from fractions import Fraction

_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's constant, splits a double into two 26-bit halves
_LARGEST_SPLITTABLE = 1e150  # beyond this the splitter's product could overflow
_TINY = 1e-290  # below this a*b's rounding error may fall under the smallest normal double
_HUGE = 1e290


def fma(a: float, b: float, c: float) -> float:
    """`a * b + c` rounded once to the nearest double (ties to even), as IEEE 754 defines it.

    The exact product is split into `product + error` (Dekker's two-product, exact for normal
    magnitudes) and `math.fsum` rounds the exact sum of three doubles correctly. Magnitudes
    where the split is not exact take the slow exact path through `Fraction`.
    """
    product = a * b
    magnitude = abs(product)
    if not (_TINY < magnitude < _HUGE) or abs(a) > _LARGEST_SPLITTABLE or abs(b) > _LARGEST_SPLITTABLE:
        return _fma_exact(a, b, c)
    t = _SPLITTER * a
    a_hi = t - (t - a)
    a_lo = a - a_hi
    t = _SPLITTER * b
    b_hi = t - (t - b)
    b_lo = b - b_hi
    error = ((a_hi * b_hi - product) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return math.fsum((product, error, c))


def _fma_exact(a: float, b: float, c: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c  # inf/nan propagate the same way with or without fusing
    if a == 0.0 or b == 0.0:
        return c + a * b  # keeps IEEE's signed-zero result
    return float(Fraction(a) * Fraction(b) + Fraction(c))
