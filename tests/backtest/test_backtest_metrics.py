"""Metrics against values worked out by hand on small series, and the two benchmarks."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from analytics_data import hourly_index, result, trade

from backtest.benchmarks import buy_and_hold, equal_weight
from backtest.metrics import (
    compute_metrics,
    drawdown_of,
    json_safe,
    periods_per_year,
    result_metrics,
    returns_of,
)


def series(values: list[float]) -> pd.Series:
    return pd.Series(values, index=hourly_index(len(values)), dtype=float)


def test_periods_per_year_come_from_the_bar_interval() -> None:
    assert periods_per_year(hourly_index(10)) == 8760
    daily = pd.to_datetime([0, 86_400_000, 2 * 86_400_000], unit="ms", utc=True)
    assert periods_per_year(daily) == 365
    assert math.isnan(periods_per_year(hourly_index(1)))


def test_max_drawdown_and_its_duration_by_hand() -> None:
    # peak 110 at bar 1, trough 99 (-10 %) at bar 2, back above 110 at bar 4 -> 3 bars under water;
    # then a new peak 111 and 100 at the last bar: -9.9 %, not recovered, 1 bar.
    equity = series([100, 110, 99, 105, 111, 100])
    m = compute_metrics(equity, starting_cash=100)
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["max_drawdown_duration_bars"] == 3
    assert m["max_drawdown_duration_days"] == pytest.approx(3 / 24)
    assert m["longest_drawdown_bars"] == 3
    assert list(drawdown_of(equity, 100).round(6)) == [0, 0, 0.1, pytest.approx(0.045455, abs=1e-6), 0,
                                                       pytest.approx(0.099099, abs=1e-6)]
    assert m["total_return"] == pytest.approx(0.0)


def test_a_drawdown_from_the_starting_cash_counts_from_before_the_first_bar() -> None:
    m = compute_metrics(series([90, 95, 100, 120]), starting_cash=100)
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["max_drawdown_duration_bars"] == 3  # peak = the cash before bar 0, recovered at bar 2
    assert m["total_return"] == pytest.approx(0.2)


def test_a_flat_curve_has_zero_sharpe_volatility_and_drawdown() -> None:
    m = compute_metrics(series([100.0] * 50), starting_cash=100)
    assert m["sharpe"] == 0.0
    assert m["sortino"] == 0.0
    assert m["volatility"] == 0.0
    assert m["max_drawdown"] == 0.0
    assert m["max_drawdown_duration_bars"] == 0
    assert m["cagr"] == pytest.approx(0.0)


def test_sharpe_sortino_volatility_and_cagr_by_hand() -> None:
    equity = series([110, 99, 108.9])  # from 100: returns +10 %, -10 %, +10 %
    m = compute_metrics(equity, starting_cash=100, periods=4)
    returns = [0.1, -0.1, 0.1]
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    assert list(returns_of(equity, 100)) == pytest.approx(returns)
    assert m["sharpe"] == pytest.approx(mean / std * 2)
    assert m["volatility"] == pytest.approx(std * 2)
    assert m["sortino"] == pytest.approx(mean / math.sqrt(0.01 / 3) * 2)
    # 3 periods at 4 per year = 0.75 years; 8.9 % over them
    assert m["cagr"] == pytest.approx(1.089 ** (1 / 0.75) - 1)
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.1)


def test_a_curve_without_losing_bars_has_infinite_sortino_and_json_says_null() -> None:
    m = compute_metrics(series([101, 103, 104, 108]), starting_cash=100)
    assert m["sortino"] == math.inf
    assert m["calmar"] == math.inf
    assert json_safe(m)["sortino"] is None


def test_trade_metrics_win_rate_profit_factor_turnover_exposure() -> None:
    trades = [trade(30, at=0), trade(-10, at=2), trade(20, at=4), trade(-5, at=6),
              trade(7, at=8, closed=False)]
    r = result([1000, 1030, 1020, 1040, 1035, 1042], starting=1000, trades=trades,
               position=[1, 0, 1, 0, 0, 1], fees=4.5)
    m = result_metrics(r)
    assert m["trades"] == 5
    assert m["closed_trades"] == 4
    assert m["win_rate"] == pytest.approx(0.5)
    assert m["profit_factor"] == pytest.approx(50 / 15)
    assert m["avg_trade_pnl"] == pytest.approx(35 / 4)
    assert m["exposure"] == pytest.approx(3 / 6)
    assert m["fees_paid"] == pytest.approx(4.5)
    notional = 100 * 5 + (130 + 90 + 120 + 95)  # entries + exits of the closed trades
    assert m["turnover"] == pytest.approx(notional / (sum([1000, 1030, 1020, 1040, 1035, 1042]) / 6))


def test_only_wins_is_an_infinite_profit_factor_and_no_trades_is_zero() -> None:
    assert result_metrics(result([100, 101], trades=[trade(5)]))["profit_factor"] == math.inf
    no_trades = result_metrics(result([100, 101]))
    assert no_trades["profit_factor"] == 0.0
    assert no_trades["win_rate"] == 0.0
    assert no_trades["exposure"] == 0.0


def test_buy_and_hold_follows_the_close_after_one_fee() -> None:
    closes = series([100, 120, 90])
    bench = buy_and_hold(closes, 1000, fee=0.01)
    assert list(bench.equity) == pytest.approx([990, 1188, 891])
    m = bench.metrics()
    assert m["total_return"] == pytest.approx(-0.109)
    assert (m["exposure"], m["trades"], m["fees_paid"]) == (1.0, 1, pytest.approx(10))
    assert math.isnan(m["win_rate"])
    assert m["turnover"] == pytest.approx(990 / ((990 + 1188 + 891) / 3))
    with pytest.raises(ValueError, match="at least one close"):
        buy_and_hold(series([]), 1000)


def test_equal_weight_basket_splits_the_cash_on_the_bars_all_assets_share() -> None:
    a = series([100, 110, 120, 130])
    b = pd.Series([50, 25, 50], index=hourly_index(4)[1:], dtype=float)  # starts one bar later
    bench = equal_weight({"A": a, "B": b}, 1000)
    # from bar 1: 500 in A at 110 and 500 in B at 50
    assert list(bench.equity) == pytest.approx([1000, 500 * 120 / 110 + 250, 500 * 130 / 110 + 500])
    assert bench.name == "equal-weight basket (2)"
    with pytest.raises(ValueError, match="share no bar"):
        equal_weight({"A": a.iloc[:1], "B": b}, 1000)


def test_annualising_a_huge_gain_over_a_few_bars_is_infinite_not_an_error() -> None:
    m = compute_metrics(series([300, 900, 2700]), starting_cash=100)
    assert m["cagr"] == math.inf
    assert json_safe(m)["cagr"] is None
