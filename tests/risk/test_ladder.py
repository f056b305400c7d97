"""Laddered entries and exits: Fibonacci levels, sizes within budget and Kelly, a reproducible Monte Carlo."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from agents.market_data.files import bundled_candles, read_candles
from indicators.fibonacci import fibonacci_levels
from strategies.ladder import LadderRisk, LadderSetup, build_ladder, find_swing, log_returns

D = Decimal
STEP = D("0.00000001")


@pytest.fixture(scope="module")
def btc_returns() -> np.ndarray:
    source = next(s for s in bundled_candles() if s.symbol == "BTC/USDT")
    return log_returns(read_candles(source.path, timeframe="1h")["close"])


def exact(price: float) -> Decimal:
    return D(repr(price)).quantize(STEP)


@pytest.mark.parametrize(("side", "price"), [("long", 170.0), ("short", 130.0)])
def test_levels_are_the_swings_fibonacci_levels(side: str, price: float, btc_returns: np.ndarray) -> None:
    setup = LadderSetup(side, 200.0, 100.0)  # type: ignore[arg-type]
    plan = build_ladder(setup, LadderRisk(D("10000"), D("0.01"), simulations=200), price=price,
                        returns=btc_returns, rng=np.random.default_rng(1))
    fib = fibonacci_levels(200.0, 100.0, "up" if side == "long" else "down")
    assert [level.price for level in plan.entries] == [exact(fib.retracements[r]) for r in setup.entry_ratios]
    assert [level.price for level in plan.exits] == [exact(fib.extensions[r]) for r in (1.272, 1.618)]
    assert plan.stop == (D("100") if side == "long" else D("200"))
    if side == "long":
        assert [float(level.price) for level in plan.entries] == pytest.approx([161.8, 150.0, 138.2])
        assert [float(level.price) for level in plan.exits] == pytest.approx([227.2, 261.8])
    # R:R of an entry is to the blended target (the mean of the exits), in units of its stop distance.
    blended = (227.2 + 261.8) / 2 if side == "long" else (72.8 + 38.2) / 2
    middle = plan.entries[1]
    assert middle.risk_reward == pytest.approx(abs(blended - 150.0) / 50.0)


def test_sizes_stay_within_the_budget_and_under_fractional_kelly(btc_returns: np.ndarray) -> None:
    params = LadderRisk(D("10000"), D("0.03"), kelly_multiplier=D("0.5"), win_rate=0.6, simulations=500)
    plan = build_ladder(LadderSetup("long", 200.0, 100.0), params, price=170.0, returns=btc_returns,
                        rng=np.random.default_rng(2))
    assert plan.risk_budget == D("300")
    assert plan.total_risk <= plan.risk_budget
    for level in plan.entries:
        kelly = 0.5 * (0.6 - 0.4 / level.risk_reward)  # the given win rate, the level's R:R as payoff
        assert level.kelly == pytest.approx(kelly)
        assert level.risk <= D("100")  # an equal share of the budget
        assert float(level.risk) <= 10000 * kelly + 1e-9
        assert level.size == (level.risk / (level.price - plan.stop)).quantize(STEP)
        assert level.risk > D("99")  # deep levels have enough Kelly to take their whole share
    shallow = LadderRisk(D("10000"), D("0.3"), win_rate=0.45, simulations=200)
    thin = build_ladder(LadderSetup("long", 200.0, 100.0), shallow, price=170.0, returns=btc_returns,
                        rng=np.random.default_rng(2))
    first = thin.entries[0]  # R:R 1.34 at 45 %: Kelly 0.5 x (0.45 - 0.55 / 1.34) = 1.98 %
    assert first.kelly == pytest.approx(0.5 * (0.45 - 0.55 / first.risk_reward))
    assert float(first.risk) == pytest.approx(10000 * first.kelly, abs=1e-4)  # Kelly binds, not the budget
    assert thin.exits[0].size == (thin.total_size / 2).quantize(STEP, rounding="ROUND_FLOOR")


def test_no_edge_means_no_size(btc_returns: np.ndarray) -> None:
    plan = build_ladder(LadderSetup("long", 200.0, 100.0), LadderRisk(D("10000"), D("0.01"), win_rate=0.2,
                        simulations=200), price=170.0, returns=btc_returns, rng=np.random.default_rng(3))
    assert all(level.size == 0 and level.risk == 0 for level in plan.entries)
    assert len([note for note in plan.notes if "no edge, size 0" in note]) == 3
    assert plan.monte_carlo.percentiles == dict.fromkeys((5, 25, 50, 75, 95), 0.0)


def test_the_simulation_is_reproducible_and_its_percentiles_ordered(btc_returns: np.ndarray) -> None:
    setup, params = LadderSetup("short", 21000.0, 18500.0), LadderRisk(D("10000"), D("0.01"), win_rate=0.55)

    def run(seed: int) -> object:
        rng = np.random.default_rng(seed)
        return build_ladder(setup, params, price=19000.0, returns=btc_returns, rng=rng)

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first.monte_carlo.percentiles != other.monte_carlo.percentiles
    values = list(first.monte_carlo.percentiles.values())
    assert values == sorted(values)
    assert values[0] < 0 < values[-1]
    loss = first.monte_carlo.probability_of_loss
    assert 0.05 < loss < 0.95
    assert (values[2] < 0) == (loss > 0.5)
    assert first.monte_carlo.simulations == 10_000
    assert values[0] >= -float(first.total_risk) * 1.1  # losses are the planned risk plus fees at most


def test_a_falling_path_fills_every_entry_then_stops_out() -> None:
    params = LadderRisk(D("10000"), D("0.03"), win_rate=0.6, simulations=50, horizon=200, fee=0.001)
    plan = build_ladder(LadderSetup("long", 200.0, 100.0), params, price=170.0,
                        returns=np.full(10, -0.01), rng=np.random.default_rng(0))
    expected = -sum(float(level.size) * (float(level.price) - 100.0 + 0.001 * (float(level.price) + 100.0))
                    for level in plan.entries)
    mc = plan.monte_carlo
    assert mc.percentiles[5] == pytest.approx(expected) == mc.percentiles[95]
    assert mc.probability_of_loss == 1.0
    assert mc.fill_probability == 1.0
    assert all(level.fill_probability == 1.0 for level in plan.entries)
    assert all(level.fill_probability == 0.0 for level in plan.exits)


def test_a_rally_from_below_the_zone_fills_at_once_and_exits_at_both_targets() -> None:
    params = LadderRisk(D("10000"), D("0.03"), win_rate=0.6, simulations=50, horizon=200, fee=0.0)
    plan = build_ladder(LadderSetup("long", 200.0, 100.0), params, price=130.0,
                        returns=np.full(10, 0.01), rng=np.random.default_rng(0))
    assert len([note for note in plan.notes if "fills at once, at the market" in note]) == 3
    per_unit = (227.2 + 261.8) / 2 - 130.0  # every entry filled at the market price, 130
    assert plan.monte_carlo.mean == pytest.approx(float(plan.total_size) * per_unit)
    assert plan.monte_carlo.probability_of_loss == 0.0
    assert [level.fill_probability for level in plan.exits] == [1.0, 1.0]


def test_a_rally_that_never_pulls_back_never_fills() -> None:
    plan = build_ladder(LadderSetup("long", 200.0, 100.0), LadderRisk(D("10000"), D("0.01"), simulations=50),
                        price=170.0, returns=np.full(10, 0.01), rng=np.random.default_rng(0))
    assert plan.monte_carlo.fill_probability == 0.0
    assert plan.total_size == 0
    assert len([note for note in plan.notes if "never filled in the simulation" in note]) == 3


def test_the_swing_comes_only_from_candles_up_to_the_latest() -> None:
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    high, low = close * 1.005, close * 0.995
    swing = find_swing(high[:300], low[:300], 100)
    assert (swing.high, swing.low) == (high[200:300].max(), low[200:300].min())
    assert high[swing.high_index] == swing.high
    assert low[swing.low_index] == swing.low
    spiked = high.copy()
    spiked[300:] *= 10  # a later spike cannot move a swing found at candle 300
    assert find_swing(spiked[:300], low[:300], 100) == swing
    with pytest.raises(ValueError, match="need 100 candles"):
        find_swing(high[:50], low[:50], 100)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LadderSetup("long", 200.0, 100.0, entry_ratios=(0.5, 1.2)), "between 0 and the stop ratio"),
        (lambda: LadderSetup("long", 200.0, 100.0, exit_ratios=(0.5,)), "must reach beyond every entry"),
        (lambda: LadderSetup("long", 100.0, 200.0), "must be above swing_low"),
        (lambda: LadderRisk(D("10000"), D("0")), "risk must be above 0 and at most 1"),
        (lambda: LadderRisk(D("10000"), D("1.5")), "risk must be above 0 and at most 1"),
        (lambda: LadderRisk(D("-1"), D("0.01")), "equity must be positive"),
        (lambda: build_ladder(LadderSetup("long", 200.0, 100.0), LadderRisk(D("1"), D("0.01")), price=99.0,
                              returns=[0.01, -0.01], rng=np.random.default_rng(0)), "already past the stop"),
    ],
)
def test_bad_setups_are_refused_with_reasons(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
