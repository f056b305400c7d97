"""The built-in strategies on real candles: their decisions match batch indicators exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from strategy_data import actions, real_candles, simulate

from indicators import batch
from indicators.crossover import cross
from strategies import STRATEGIES
from strategies.base import GuardedStrategy, Position, StrategyConfigError, decision_id, make_params
from strategies.breakout import Breakout, BreakoutParams
from strategies.mean_reversion import MeanReversion, MeanReversionParams
from strategies.risk_off import RiskOff
from strategies.sma_cross import SmaCross, SmaCrossParams
from strategies.trend import Trend, TrendParams
from topics.market import CandleClosed


def run(strategy, candles):
    return simulate(lambda _i, candle, position: strategy.on_candle(candle, None, position), candles)


def arrays(candles: tuple[CandleClosed, ...]) -> dict[str, np.ndarray]:
    return {name: np.array([getattr(c, name) for c in candles]) for name in ("open", "high", "low", "close")}


def walk(enter: np.ndarray, leave: np.ndarray) -> list[tuple[int, str]]:
    """Expected long-only decisions: enter when flat and `enter`, exit when long and `leave`."""
    long, out = False, []
    for i in range(len(enter)):
        if not long and enter[i]:
            long = True
            out.append((i, "enter_long"))
        elif long and leave[i]:
            long = False
            out.append((i, "exit_long"))
    return out


def test_sma_cross_trades_exactly_at_batch_crossovers() -> None:
    candles = real_candles()
    close = arrays(candles)["close"]
    crossed = cross(batch.sma(close, 10), batch.sma(close, 30))
    got = run(SmaCross(SmaCrossParams(fast=10, slow=30)), candles)
    expected = walk(crossed == 1, crossed == -1)
    assert len(expected) > 40
    assert actions(got) == expected
    entry = got[0][1]
    assert entry.side == "buy"
    assert entry.entry_type == "market"
    assert entry.size is None
    assert entry.trace["allocation"] == 1.0
    assert entry.trace["strategy"] == "sma_cross"
    exit_ = got[1][1]
    assert exit_.side == "sell"
    assert exit_.reduce_only
    assert exit_.size == Decimal(1)


def test_trend_follows_batch_ema_cross_with_atr_stop() -> None:
    candles = real_candles("ETH/USDT")
    a = arrays(candles)
    crossed = cross(batch.ema(a["close"], 20), batch.ema(a["close"], 50))
    atr = batch.atr(a["high"], a["low"], a["close"], 14)
    got = run(Trend(TrendParams()), candles)
    assert actions(got) == walk(crossed == 1, crossed == -1)
    for i, intent in got:
        if intent.trace["action"] == "enter_long":
            assert float(intent.stop_price) == pytest.approx(a["close"][i] - 2.0 * atr[i], abs=1e-6)
            assert intent.risk_fraction == Decimal("0.01")


def test_trend_can_go_short_when_allowed() -> None:
    got = run(Trend(TrendParams(allow_short=True)), real_candles())
    kinds = {action for _, action in actions(got)}
    assert kinds == {"enter_long", "exit_long", "enter_short", "exit_short"}
    shorts = [intent for _, intent in got if intent.trace["action"] == "enter_short"]
    assert all(intent.side == "sell" and intent.stop_price > Decimal(repr(intent.trace["candle"]["close"]))
               for intent in shorts)


def test_mean_reversion_buys_below_lower_band_when_oversold_and_exits_at_middle() -> None:
    candles = real_candles("SOL/USDT")
    close = arrays(candles)["close"]
    bands = batch.bbands(close, 20, 2.0)
    rsi = batch.rsi(close, 14)
    got = run(MeanReversion(MeanReversionParams()), candles)
    expected = walk((close < bands.lower) & (rsi < 30), close >= bands.middle)
    assert len(expected) > 10
    assert actions(got) == expected
    entry = next(intent for i, intent in got if intent.trace["action"] == "enter_long")
    i = next(i for i, intent in got if intent is entry)
    assert float(entry.take_profit) == pytest.approx(bands.middle[i], abs=1e-6)


def test_breakout_enters_above_prior_donchian_high_and_exits_below_prior_low() -> None:
    candles = real_candles("BNB/USDT")
    a = arrays(candles)
    high = pd.Series(a["high"]).rolling(20).max().shift(1).to_numpy()
    low = pd.Series(a["low"]).rolling(10).min().shift(1).to_numpy()
    got = run(Breakout(BreakoutParams()), candles)
    expected = walk(a["close"] > high, a["close"] < low)  # NaN compares False: no decision in warm-up
    assert len(expected) > 20
    assert actions(got) == expected


def test_risk_off_closes_any_position_and_opens_nothing() -> None:
    candle = real_candles()[0]
    strategy = RiskOff()
    assert strategy.on_candle(candle, None, Position()) == []
    (long_exit,) = strategy.on_candle(candle, None, Position(Decimal("0.3")))
    assert (long_exit.side, long_exit.size, long_exit.reduce_only) == ("sell", Decimal("0.3"), True)
    (short_exit,) = strategy.on_candle(candle, None, Position(Decimal("-2")))
    assert (short_exit.side, short_exit.size, short_exit.reduce_only) == ("buy", Decimal("2"), True)
    assert [a for _, a in actions(run(RiskOff(), real_candles()[:200]))] == []


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_no_look_ahead_altering_later_candles_never_changes_earlier_intents(name: str) -> None:
    candles = real_candles("XRP/USDT", 1500)
    cut = 900
    rng = np.random.default_rng(7)
    altered = list(candles[: cut + 1])
    for c in candles[cut + 1:]:
        k = float(rng.uniform(0.5, 1.5))
        changes = {"open": c.open * k, "high": c.high * k * 1.1, "low": c.low * k * 0.9, "close": c.close * k}
        altered.append(c.model_copy(update=changes))
    params = {"trend": {"allow_short": True}}.get(name)
    original = run(STRATEGIES[name](make_params(STRATEGIES[name], params)), candles)
    changed = run(STRATEGIES[name](make_params(STRATEGIES[name], params)), altered)
    before = [(i, intent.model_dump_json()) for i, intent in original if i <= cut]
    assert before == [(i, intent.model_dump_json()) for i, intent in changed if i <= cut]
    if name != "risk_off":
        assert before
        assert original != changed


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_runs_are_deterministic_and_state_round_trips(name: str) -> None:
    candles = real_candles("LINK/USDT", 1200)
    whole = [(i, x.model_dump_json()) for i, x in run(STRATEGIES[name](), candles)]
    assert whole == [(i, x.model_dump_json()) for i, x in run(STRATEGIES[name](), candles)]
    first = STRATEGIES[name]()
    resumed: list[tuple[int, str]] = []

    def decide(i: int, candle: CandleClosed, position: Position) -> list:
        nonlocal first
        if i == 600:  # restart from a JSON snapshot mid-stream
            first = STRATEGIES[name].from_state(json.loads(json.dumps(first.to_state())))
        intents = first.on_candle(candle, None, position)
        resumed.extend((i, x.model_dump_json()) for x in intents)
        return intents

    simulate(decide, candles)
    assert resumed == whole


def test_from_state_rejects_another_strategys_snapshot() -> None:
    with pytest.raises(ValueError, match="not a trend strategy snapshot"):
        Trend.from_state(SmaCross().to_state())


def test_every_intent_carries_a_trace_and_a_deterministic_decision_id() -> None:
    candles = real_candles()
    for _, intent in run(SmaCross(), candles[:800]):
        candle = next(c for c in candles if c.open_time == intent.trace["candle"]["open_time"])
        assert intent.decision_id == decision_id("sma_cross", candle, str(intent.trace["action"]))
        assert intent.trace["params"] == {"fast": 10, "slow": 30}
        assert set(intent.trace["signals"]) == {"sma_fast", "sma_slow", "cross"}
    c = candles[0]
    assert decision_id("trend", c, "enter_long") != decision_id("trend", c, "exit_long")
    assert decision_id("trend", c, "enter_long") != decision_id("breakout", c, "enter_long")


@pytest.mark.parametrize(("raw", "message"), [
    ({"fastt": 3}, "strategy sma_cross: unknown parameter.s. fastt; known: fast, slow"),
    ({"fast": 1}, r"parameter fast=1 is outside its bounds \[2, 500\]"),
    ({"fast": 2.5}, r"parameter fast=2.5 must be an integer in \[2, 500\]"),
    ({"fast": "x"}, "parameter fast='x' must be an integer"),
    ({"fast": 30, "slow": 20}, r"fast \(30\) must be below slow \(20\)"),
])
def test_bad_parameters_name_the_key_value_and_bounds(raw: dict[str, object], message: str) -> None:
    with pytest.raises(StrategyConfigError, match=message):
        make_params(SmaCross, raw)


def test_bool_and_float_parameters_are_checked() -> None:
    with pytest.raises(StrategyConfigError, match="allow_short='yes' must be true or false"):
        make_params(Trend, {"allow_short": "yes"})
    with pytest.raises(StrategyConfigError, match=r"atr_multiple=nan must be a number"):
        make_params(Trend, {"atr_multiple": float("nan")})
    assert make_params(Trend, {"atr_multiple": 3}).atr_multiple == 3.0


def test_parameter_space_matches_each_models_defaults_and_bounds() -> None:
    for cls in STRATEGIES.values():
        defaults = cls.Params()
        for spec in cls.space:
            assert getattr(defaults, spec.name) == spec.default
            if spec.kind != "bool":
                assert spec.low <= spec.default <= spec.high


class _Exploding(SmaCross):
    def on_candle(self, candle, signals, position):
        if candle.open_time >= real_candles()[5].open_time:
            raise ZeroDivisionError("boom")
        return super().on_candle(candle, signals, position)


def test_guard_turns_a_raise_into_a_failure_record_and_disables_the_strategy() -> None:
    guarded = GuardedStrategy(_Exploding())
    candles = real_candles()
    for c in candles[:5]:
        assert guarded.on_candle(c, None, Position()) == ([], None)
    intents, failure = guarded.on_candle(candles[5], None, Position())
    assert intents == []
    assert failure is not None
    assert (failure.strategy, failure.symbol, failure.open_time, failure.error, failure.message) == (
        "sma_cross", "BTC/USDT", candles[5].open_time, "ZeroDivisionError", "boom")
    assert guarded.disabled
    assert guarded.on_candle(candles[6], None, Position()) == ([], None)
