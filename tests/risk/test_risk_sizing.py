"""Sizing, stops and ratios are exact Decimal arithmetic; trailing stops only ever ratchet in favour."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.risk import (
    TrailingStop,
    atr_levels,
    fixed_fraction_size,
    floor_to_step,
    kelly_fraction,
    risk_reward,
    to_decimal,
)

D = Decimal


def test_fixed_fraction_risks_the_fraction_over_the_stop_distance() -> None:
    assert fixed_fraction_size(D("10000"), D("0.01"), D("50000"), D("49000")) == D("0.1")
    assert fixed_fraction_size(D("25000"), D("0.02"), D("2000"), D("2100")) == D("5")  # a short: stop above
    with pytest.raises(ValueError, match="must differ from the entry"):
        fixed_fraction_size(D("10000"), D("0.01"), D("100"), D("100"))


@pytest.mark.parametrize(
    ("win_rate", "payoff", "expected"),
    [("0.6", "2", "0.4"), ("0.5", "1", "0"), ("0.25", "2", "-0.125"), ("0.55", "1.5", "0.25"),
     ("1", "3", "1")],
)
def test_kelly_is_win_rate_minus_loss_rate_over_payoff(win_rate: str, payoff: str, expected: str) -> None:
    assert kelly_fraction(D(win_rate), D(payoff)) == D(expected)


def test_kelly_takes_floats_through_their_shortest_repr_and_refuses_nonsense() -> None:
    assert kelly_fraction(0.6, 2.0) == D("0.4")
    with pytest.raises(ValueError, match="win_rate must be between 0 and 1"):
        kelly_fraction(1.2, 2)
    with pytest.raises(ValueError, match="payoff must be positive"):
        kelly_fraction(0.5, 0)
    with pytest.raises(ValueError, match="finite"):
        to_decimal("price", float("nan"))


def test_atr_stops_and_targets_sit_on_each_side_of_the_entry() -> None:
    assert atr_levels("buy", D("50000"), D("500"), D("2"), D("3")) == (D("49000"), D("51500"))
    assert atr_levels("sell", D("50000"), D("500"), D("2"), D("3")) == (D("51000"), D("48500"))
    assert atr_levels("buy", D("1.2345"), D("0.0101"), D("1.5"), D("2.5")) == (D("1.21935"), D("1.25975"))


def test_risk_reward_is_in_r_and_needs_the_stop_on_the_losing_side() -> None:
    assert risk_reward("buy", D("100"), D("95"), D("115")) == D("3")
    assert risk_reward("sell", D("100"), D("104"), D("94")) == D("1.5")
    with pytest.raises(ValueError, match="losing side"):
        risk_reward("buy", D("100"), D("101"), D("110"))


def test_sizes_round_down_to_the_step() -> None:
    assert floor_to_step(D("0.123456789"), D("0.00000001")) == D("0.12345678")
    assert floor_to_step(D("0.0999"), D("0.01")) == D("0.09")
    assert floor_to_step(D("7"), D("0.5")) == D("7")


def test_a_trailing_stop_follows_a_rally_and_holds_in_a_pullback() -> None:
    stop = TrailingStop.start("long", D("100"), D("5"))
    assert stop.stop == D("95")
    stop = stop.update(D("110"))
    assert stop.stop == D("105")
    stop = stop.update(D("104"))
    assert stop.stop == D("105")  # the pullback does not drag it down
    assert stop.is_hit(D("104"))
    assert not stop.is_hit(D("105.01"))
    short = TrailingStop.start("short", D("100"), D("5"), stop=D("103")).update(D("90")).update(D("99"))
    assert (short.stop, short.best) == (D("95"), D("90"))
    assert short.is_hit(D("95"))
    with pytest.raises(ValueError, match="losing side"):
        TrailingStop.start("long", D("100"), D("5"), stop=D("101"))


prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["long", "short"]),
    entry=prices,
    distance=st.decimals(min_value=D("0.01"), max_value=D("1000"), places=2),
    path=st.lists(prices, max_size=60),
)
def test_a_trailing_stop_never_moves_against_the_position(
    side: str, entry: Decimal, distance: Decimal, path: list[Decimal]
) -> None:
    stop = TrailingStop.start(side, entry, distance)  # type: ignore[arg-type]
    first, best = stop.stop, entry
    for price in path:
        after = stop.update(price)
        if side == "long":
            assert after.stop >= stop.stop
            best = max(best, price)
            assert after.stop == max(first, best - distance)
        else:
            assert after.stop <= stop.stop
            best = min(best, price)
            assert after.stop == min(first, best + distance)
        stop = after
