"""Monte Carlo bands: reproducible with a seed, ordered, and bracketing the actual result."""

from __future__ import annotations

import numpy as np
import pytest
from analytics_data import result, trade

from backtest.montecarlo import bootstrap_returns, bootstrap_trades, monte_carlo, trade_returns


def test_the_same_seed_gives_the_same_bands_and_another_seed_does_not() -> None:
    returns = np.random.default_rng(1).normal(0.001, 0.02, 300)
    a = bootstrap_returns(returns, 10_000, simulations=500, seed=7)
    b = bootstrap_returns(returns, 10_000, simulations=500, seed=7)
    c = bootstrap_returns(returns, 10_000, simulations=500, seed=8)
    assert a == b
    assert a.final_equity != c.final_equity


def test_bands_are_ordered_and_bracket_the_actual_sequence() -> None:
    returns = np.random.default_rng(2).normal(0.0005, 0.01, 400)
    for bands in (bootstrap_returns(returns, 1000, simulations=2000, seed=0),
                  bootstrap_returns(returns, 1000, simulations=2000, seed=0, block=24),
                  bootstrap_trades(returns[:60], 1000, simulations=2000, seed=0)):
        finals = [bands.final_equity[p] for p in (5, 25, 50, 75, 95)]
        drawdowns = [bands.max_drawdown[p] for p in (5, 25, 50, 75, 95)]
        assert finals == sorted(finals)
        assert drawdowns == sorted(drawdowns)
        assert finals[0] < bands.actual_final_equity < finals[-1]
        assert drawdowns[0] < bands.actual_max_drawdown < drawdowns[-1]
        assert 0 <= bands.probability_of_loss <= 1
    assert bands.actual_final_equity == pytest.approx(1000 * np.prod(1 + returns[:60]))


def test_all_winning_trades_never_lose_and_never_draw_down() -> None:
    bands = bootstrap_trades([0.01, 0.02, 0.03], 100, simulations=200, seed=0)
    assert bands.probability_of_loss == 0
    assert bands.max_drawdown[95] == 0
    assert bands.final_equity[5] >= 100 * 1.01 ** 3


def test_monte_carlo_of_a_result_uses_its_trades_and_bar_returns() -> None:
    r = result([1000, 1030, 1020, 1040, 1030, 1050], starting=1000,
               trades=[trade(30, at=0), trade(-10, at=2), trade(20, at=3)])
    returns = trade_returns(r)
    # equity before each entry: the starting cash (entry at bar 0's open), bar 1's mark, bar 2's mark
    assert list(returns) == pytest.approx([30 / 1000, -10 / 1030, 20 / 1020])
    both = monte_carlo(r, simulations=100, seed=3)
    assert both["returns"].actual_final_equity == pytest.approx(1050)
    assert both["trades"].samples == 3
    assert both["returns"].samples == 6
    assert both["trades"].to_dict()["final_equity"]["50"] > 0
    with pytest.raises(ValueError, match="simulations"):
        bootstrap_trades([0.1], 100, simulations=0)


def test_a_walk_forward_segment_is_bootstrapped_like_a_result() -> None:
    from backtest.walkforward import segment_of

    r = result([1000, 1030, 1020, 1040, 1030, 1050], starting=1000, trades=[trade(30, at=0), trade(20, at=3)])
    part = segment_of(r, 3, int(r.equity.index[3].value // 1_000_000))
    both = monte_carlo(part, simulations=50, seed=1)
    assert both["returns"].actual_final_equity == pytest.approx(1050)
    assert both["trades"].samples == 1  # only the trade entered inside the segment
