"""Crossover helpers (batch = streaming, touching is not crossing) and Fibonacci levels."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from indicator_data import DATASETS, load

from indicators import batch
from indicators.crossover import Crossover, cross, cross_down, cross_up
from indicators.fibonacci import EXTENSIONS, RETRACEMENTS, fibonacci_levels
from indicators.fma import fma

NAN = math.nan


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 2, 3, 2, 1], [2, 2, 2, 2, 2], [0, 0, 1, 0, -1]),        # through the line both ways
        ([1, 3, 2, 3, 1], 2, [0, 1, 0, 0, -1]),                       # touch from above and back: no cross
        ([3, 2, 2, 1, 2, 3], 2, [0, 0, 0, -1, 0, 1]),                 # rest on the line, leave below
        ([1, NAN, 3, 1, 3], 2, [0, 0, 0, -1, 1]),                     # after a gap the side is unknown
        ([1, 3, 1], [NAN, 2, 2], [0, 0, -1]),                         # b warming up
        ([], 2, []),
    ],
)
def test_cross_marks_where_a_goes_through_b(a: list[float], b: object, expected: list[int]) -> None:
    assert cross(a, b).tolist() == expected
    assert cross_up(a, b).tolist() == [value == 1 for value in expected]
    assert cross_down(a, b).tolist() == [value == -1 for value in expected]


values = st.one_of(st.integers(-3, 3).map(float), st.just(NAN))


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(values, values), max_size=60), split=st.integers(0, 60))
def test_streaming_crossover_equals_batch_and_survives_a_snapshot(
    pairs: list[tuple[float, float]], split: int
) -> None:
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    first = Crossover()
    streamed = [first.update(x, y) for x, y in pairs[:split]]
    second = Crossover.from_state(json.loads(json.dumps(first.to_state())))
    streamed += [second.update(x, y) for x, y in pairs[split:]]
    assert streamed == cross(a, b).tolist()


def test_crossover_of_real_emas_alternates_and_takes_warm_up_as_none() -> None:
    close = load(*DATASETS[0][1:])["close"].to_numpy()
    fast, slow = batch.ema(close, 20), batch.ema(close, 50)
    crossings = cross(fast, slow)
    signs = crossings[crossings != 0]
    assert len(signs) > 10
    assert (np.diff(signs) != 0).all()  # up, down, up, ...: real EMAs never sit exactly on each other
    streaming = Crossover()
    fast_or_none = [None if math.isnan(value) else value for value in fast]
    slow_or_none = [None if math.isnan(value) else value for value in slow]
    got = [streaming.update(f, s) for f, s in zip(fast_or_none, slow_or_none, strict=True)]
    assert got == crossings.tolist()


def test_cross_refuses_misshapen_input() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        cross([[1.0, 2.0]], 1.0)
    with pytest.raises(ValueError, match="length 3"):
        cross([1.0, 2.0, 3.0], [1.0, 2.0])


def test_fibonacci_levels_of_an_up_and_a_down_swing() -> None:
    up = fibonacci_levels(200.0, 100.0, "up")
    assert up.retracements == pytest.approx(
        {0.236: 176.4, 0.382: 161.8, 0.5: 150.0, 0.618: 138.2, 0.786: 121.4}
    )
    assert up.extensions == pytest.approx({1.272: 227.2, 1.618: 261.8, 2.618: 361.8})
    down = fibonacci_levels(200.0, 100.0, "down")
    assert down.retracements == pytest.approx(
        {0.236: 123.6, 0.382: 138.2, 0.5: 150.0, 0.618: 161.8, 0.786: 178.6}
    )
    assert down.extensions == pytest.approx({1.272: 72.8, 1.618: 38.2, 2.618: -61.8})
    assert tuple(up.retracements) == RETRACEMENTS
    assert tuple(up.extensions) == EXTENSIONS


@given(low=st.floats(1e-6, 1e6), span=st.floats(1e-6, 1e6), direction=st.sampled_from(["up", "down"]))
def test_fibonacci_levels_lie_in_order_inside_and_beyond_the_swing(
    low: float, span: float, direction: str
) -> None:
    high = low + span
    if high <= low:
        return
    levels = fibonacci_levels(high, low, direction)  # type: ignore[arg-type]
    prices = list(levels.retracements.values())
    assert all(low <= price <= high for price in prices)
    assert prices == sorted(prices, reverse=direction == "up")
    beyond = list(levels.extensions.values())
    if direction == "up":
        assert all(price > high for price in beyond)
    else:
        assert all(price < low for price in beyond)


@pytest.mark.parametrize(
    ("high", "low", "direction", "message"),
    [
        (100.0, 100.0, "up", "must be above swing_low"),
        (100.0, 120.0, "up", "must be above swing_low"),
        (NAN, 1.0, "up", "swing_high must be a finite number"),
        (2.0, 1.0, "sideways", "direction must be 'up' or 'down'"),
    ],
)
def test_fibonacci_refuses_a_meaningless_swing(high: float, low: float, direction: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fibonacci_levels(high, low, direction)  # type: ignore[arg-type]


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@settings(max_examples=2000)
@given(a=finite, b=finite, c=finite)
def test_fma_rounds_once_like_ieee(a: float, b: float, c: float) -> None:
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if abs(exact) > Fraction(1.7976931348623157e308):
        return  # overflow: not a value the indicators produce
    assert fma(a, b, c) == float(exact)
