"""Backtest rankings in the StrategySelector: optimised parameters, per-stream rankings, their validation,
and `rankings_from` turning the optimiser's StrategyRanked events into rankings."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.selector import (
    Choice,
    SelectorConfigError,
    StrategySelector,
    parse_strategies,
    rankings_from,
    selector_from,
)
from strategies.breakout import BreakoutParams
from strategies.sma_cross import SmaCrossParams
from strategies.trend import TrendParams
from topics.backtest import StrategyRanked

CONFIG = parse_strategies({
    "regimes": {
        "bull": [{"strategy": "trend", "params": {"fast": 10, "slow": 40}}, {"strategy": "breakout"}],
        "bear": ["risk_off"],
    },
})
BTC, ETH = "binance:BTC/USDT:1h", "binance:ETH/USDT:1h"


def ranked(
    strategy: str, regime: str | None, score: float | None, params: dict[str, Any] | None = None, *,
    symbol: str = "BTC/USDT", bars: int = 500, feasible: bool = True, at: int = 1_000,
) -> StrategyRanked:
    return StrategyRanked(
        exchange="binance", symbol=symbol, timeframe="1h", strategy=strategy, params=params or {},
        regime=regime, metric="sharpe", score=score, feasible=feasible, bars=bars,  # type: ignore[arg-type]
        out_of_sample={"sharpe": score}, run_id=f"run-{strategy}-{at}", at=at,
    )


def test_a_ranked_choice_runs_with_its_optimised_params() -> None:
    optimised = Choice("trend", TrendParams(fast=5, slow=30))
    selector = StrategySelector(CONFIG).with_rankings({"bull": [optimised, "breakout"]})
    assert selector.choose("bull") == optimised
    assert selector.candidates("bull") == (optimised, CONFIG.regimes["bull"][1], CONFIG.regimes["bull"][0])
    assert selector.selected_by("bull") == "rankings"
    assert selector.selected_by("bear") == "strategies.yaml"
    assert optimised in selector.choices()  # kept warm like every selectable choice


def test_a_streams_own_rankings_win_over_the_rankings_for_every_stream() -> None:
    own = Choice("sma_cross", SmaCrossParams(fast=4, slow=12))
    selector = StrategySelector(CONFIG, {"bull": ["breakout", "trend"]}, {BTC: {"bull": [own, "trend"]}})
    assert (selector.choose("bull", BTC), selector.selected_by("bull", BTC)) == (own, "stream_rankings")
    assert selector.choose("bull", ETH).strategy == "breakout"
    assert selector.selected_by("bull", ETH) == "rankings"
    assert selector.choose("bull").strategy == "breakout"  # no stream: the rankings for every stream
    assert (selector.choose("bear", BTC).strategy, selector.selected_by("bear", BTC)) == ("risk_off",
                                                                                          "strategies.yaml")
    assert own in selector.choices(BTC)
    assert own not in selector.choices(ETH)  # only the stream that can select it runs it


@pytest.mark.parametrize(("rankings", "streams", "message"), [
    ({"bull": "trend"}, None, r"rankings\.bull: expected a list of strategies, got 'trend'"),
    ({"moon": ["trend"]}, None, "rankings: unknown regime 'moon'; known: bull, bear"),
    ({"bull": [Choice("nope", TrendParams())]}, None, r"rankings\.bull: unknown strategy 'nope'; known: "),
    ({"bull": [3]}, None, r"rankings\.bull: unknown strategy 3"),
    ({"bull": [Choice("breakout", TrendParams())]}, None,
     r"rankings\.bull: the params of breakout are TrendParams, not BreakoutParams"),
    (None, {BTC: {"moon": ["trend"]}}, r"rankings\[binance:BTC/USDT:1h\]: unknown regime 'moon'"),
    (None, {BTC: ["trend"]}, r"rankings\[binance:BTC/USDT:1h\]: expected a mapping of regime"),
])
def test_every_invalid_ranking_is_one_clear_error(rankings: Any, streams: Any, message: str) -> None:
    with pytest.raises(SelectorConfigError, match=message):
        StrategySelector(CONFIG, rankings, streams)


def test_rankings_from_orders_a_streams_counted_regimes_best_first_with_optimised_params() -> None:
    events = [
        ranked("trend", "bull", 0.8, {"fast": 7, "slow": 21}),
        ranked("breakout", "bull", 1.3, {"period": 30, "exit_period": 12}),
        ranked("sma_cross", "bull", 2.0, feasible=False),  # broke the drawdown limit
        ranked("mean_reversion", "bull", 3.0, bars=99),  # too few bars behind the score
        ranked("risk_off", "bull", None),  # undefined score
        ranked("sma_cross", None, 9.0),  # overall, not a regime's
        ranked("sma_cross", "bull", 5.0, symbol="ETH/USDT"),  # another stream
        ranked("trend", "bear", 1.0),  # one strategy in bear: nothing to compare
    ]
    rankings = rankings_from(events, stream=BTC)
    assert rankings == {"bull": (Choice("breakout", BreakoutParams(period=30, exit_period=12)),
                                 Choice("trend", TrendParams(fast=7, slow=21)))}
    assert rankings_from(events, stream=BTC, min_bars=50)["bull"][0].strategy == "mean_reversion"
    assert "bear" in rankings_from(events, stream=BTC, min_strategies=1)


def test_rankings_from_every_stream_ranks_by_the_mean_score_with_the_newest_params() -> None:
    events = [
        ranked("trend", "bull", 1.0, {"fast": 5, "slow": 20}, at=2_000),
        ranked("breakout", "bull", 0.5),
        ranked("trend", "bull", -1.0, {"fast": 9, "slow": 30}, symbol="ETH/USDT", at=3_000),
        ranked("breakout", "bull", 0.4, symbol="ETH/USDT"),
    ]
    order = rankings_from(events)["bull"]  # trend: mean 0.0, breakout: mean 0.45
    assert order == (Choice("breakout", BreakoutParams()), Choice("trend", TrendParams(fast=9, slow=30)))
    assert [c.strategy for c in rankings_from(events, stream=BTC)["bull"]] == ["trend", "breakout"]


def test_the_latest_ranking_per_key_counts_and_ties_go_to_the_name() -> None:
    newer = ranked("trend", "bull", -2.0, {"fast": 6, "slow": 18}, at=5_000)
    older = ranked("trend", "bull", 4.0, at=4_000)
    breakout = ranked("breakout", "bull", 1.0)
    assert [c.strategy for c in rankings_from([newer, older, breakout])["bull"]] == ["breakout", "trend"]
    again = ranked("trend", "bull", 3.0, {"fast": 8, "slow": 24}, at=5_000)  # same time: the later one
    assert rankings_from([newer, again, breakout])["bull"][0] == Choice("trend", TrendParams(fast=8, slow=24))
    tie = [ranked("trend", "bull", 1.0), ranked("breakout", "bull", 1.0)]
    assert [c.strategy for c in rankings_from(tie)["bull"]] == ["breakout", "trend"]
    assert [c.strategy for c in rankings_from(tie[::-1])["bull"]] == ["breakout", "trend"]


@pytest.mark.parametrize(("event", "message"), [
    (ranked("nope", "bull", 1.0), r"ranking binance:BTC/USDT:1h:bull:nope \(run run-nope-1000\): "
                                  "unknown strategy 'nope'"),
    (ranked("trend", None, 1.0, {"fast": 0}),
     r"ranking binance:BTC/USDT:1h:all:trend .*\.params: strategy trend: parameter fast=0 is outside"),
    (ranked("trend", "bull", 1.0, {"speed": 3}, feasible=False), "unknown parameter.s. speed"),
])
def test_an_invalid_ranking_event_is_one_clear_error_even_if_not_counted(event: StrategyRanked,
                                                                         message: str) -> None:
    with pytest.raises(SelectorConfigError, match=message):
        rankings_from([ranked("breakout", "bull", 1.0), event])


def test_selector_from_ranks_each_stream_by_its_own_rankings_else_by_every_streams() -> None:
    events = [
        ranked("trend", "bull", 1.0, {"fast": 5, "slow": 20}), ranked("breakout", "bull", 0.2),
        ranked("sma_cross", "bull", 3.0, symbol="SOL/USDT"),  # alone on SOL: no ranking of its own
    ]
    selector = selector_from(CONFIG, events)
    assert selector.choose("bull", BTC) == Choice("trend", TrendParams(fast=5, slow=20))
    assert selector.selected_by("bull", BTC) == "stream_rankings"
    sol = "binance:SOL/USDT:1h"
    assert selector.choose("bull", sol).strategy == "sma_cross"
    assert selector.selected_by("bull", sol) == "rankings"
    assert selector.selected_by("bear", sol) == "strategies.yaml"
    assert selector_from(CONFIG, []).choose("bull", BTC) == CONFIG.regimes["bull"][0]
