"""StrategyOrchestrator on real candles and scripted regimes: hand-offs, traces, restarts, failures."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
from strategy_data import apply_fills, real_candles

from orchestrator.selector import Handoff, StrategySelector, parse_strategies
from orchestrator.switching import StrategyOrchestrator
from strategies import STRATEGIES
from strategies.base import Position, StrategyFailure
from strategies.breakout import Breakout, BreakoutParams
from strategies.sma_cross import SmaCross
from topics.market import CandleClosed
from topics.technical import Confidence, Decision, TechnicalSignal
from topics.trading import OrderIntent

CONFIG = {
    "regimes": {
        "bull": [{"strategy": "sma_cross", "params": {"fast": 3, "slow": 8}}],
        "neutral": [{"strategy": "breakout", "params": {"period": 20, "exit_period": 10}}],
        "bear": ["risk_off"],
    },
}
CANDLES = real_candles("ETH/USDT", 1500)


def orchestrator(mode: str = "close", config: dict[str, Any] = CONFIG) -> StrategyOrchestrator:
    handoff = Handoff(mode, Decimal("0.5"))  # type: ignore[arg-type]
    return StrategyOrchestrator(StrategySelector(parse_strategies(config)), handoff)


def drive(
    orch: StrategyOrchestrator, candles: Sequence[CandleClosed], regime: Callable[[int], str],
    position: Position | None = None, start: int = 0,
) -> tuple[list[tuple[int, OrderIntent]], list[Position], list[StrategyFailure]]:
    """Each candle with the position the earlier intents made (filled at the next open)."""
    position = position or Position()
    intents, positions, failures = [], [], []
    for i, candle in enumerate(candles, start):
        positions.append(position)
        step = orch.on_candle(candle, None, position, regime(i))
        intents.extend((i, intent) for intent in step.intents)
        failures.extend(step.failures)
        position = apply_fills(position, step.intents)
    return intents, positions, failures


def bull_run() -> tuple[list[tuple[int, OrderIntent]], int]:
    """The all-bull run and a candle where a position is open and stays open for a few candles."""
    intents, positions, _ = drive(orchestrator(), CANDLES, lambda _i: "bull")
    switch = next(i for i in range(100, len(CANDLES)) if all(p.quantity > 0 for p in positions[i:i + 3]))
    return intents, switch


def test_close_handoff_closes_the_position_then_the_new_strategy_decides() -> None:
    bull, switch = bull_run()
    got, positions, _ = drive(orchestrator("close"), CANDLES, lambda i: "bull" if i < switch else "neutral")
    assert [(i, x) for i, x in got if i < switch] == [(i, x) for i, x in bull if i < switch]
    at_switch = [x for i, x in got if i == switch]
    assert len(at_switch) == 1
    (handoff,) = at_switch
    assert (handoff.strategy, handoff.side, handoff.reduce_only) == ("sma_cross", "sell", True)
    assert handoff.size == Decimal(1)
    assert handoff.trace["action"] == "handoff_close"
    assert handoff.trace["regime"] == "neutral"
    assert handoff.trace["active"]["strategy"] == "breakout"
    assert positions[switch + 1] == Position()
    later = [x for i, x in got if i > switch]
    assert later
    assert {x.strategy for x in later} == {"breakout"}
    assert all(x.trace["regime"] == "neutral" and x.trace["params"]["period"] == 20 for x in later)


def test_reduce_handoff_sells_the_fraction_and_the_new_strategy_manages_the_rest() -> None:
    _, switch = bull_run()
    got, positions, _ = drive(orchestrator("reduce"), CANDLES, lambda i: "bull" if i < switch else "neutral")
    (handoff,) = [x for i, x in got if i == switch]
    assert (handoff.trace["action"], handoff.reduce_only) == ("handoff_reduce", True)
    assert handoff.size == Decimal("0.5")
    assert positions[switch + 1].quantity == Decimal("0.5")
    first_new = next(x for i, x in got if i > switch)
    assert (first_new.strategy, first_new.trace["action"]) == ("breakout", "exit_long")
    assert first_new.size == Decimal("0.5")


def test_keep_handoff_lets_the_old_strategy_finish_then_switches_when_flat() -> None:
    bull, switch = bull_run()
    got, positions, _ = drive(orchestrator("keep"), CANDLES, lambda i: "bull" if i < switch else "neutral")
    bull_exit = next(i for i, x in bull if i >= switch and x.trace["action"] == "exit_long")
    ids = [(i, x.decision_id) for i, x in got if i <= bull_exit]
    assert ids == [(i, x.decision_id) for i, x in bull if i <= bull_exit]  # the old strategy ran on
    (exit_,) = [x for i, x in got if switch <= i <= bull_exit]
    assert (exit_.strategy, exit_.trace["action"]) == ("sma_cross", "exit_long")
    assert (exit_.trace["regime"], exit_.trace["pending"]["strategy"]) == ("neutral", "breakout")
    after = [x for i, x in got if i > bull_exit]
    assert after
    assert {x.strategy for x in after} == {"breakout"}
    assert positions[bull_exit + 1] == Position()


def test_a_switch_while_flat_is_immediate_and_strategies_are_kept_warm() -> None:
    _, positions, _ = drive(orchestrator(), CANDLES, lambda _i: "bull")
    switch = next(i for i in range(600, len(CANDLES)) if positions[i].is_flat)
    orch = orchestrator("close")
    got, _, _ = drive(orch, CANDLES[:switch + 1], lambda i: "bull" if i < switch else "neutral")
    assert orch.active(CANDLES[0].key).strategy == "breakout"
    assert not [x for i, x in got if i == switch and x.strategy != "breakout"]  # no hand-off needed
    standalone = Breakout(BreakoutParams(period=20, exit_period=10))
    for candle in CANDLES[:switch + 1]:
        standalone.on_candle(candle, None, Position())
    saved = orch.to_state()["instruments"][CANDLES[0].key]["strategies"]
    (breakout,) = [s["state"] for s in saved.values() if s["state"]["strategy"] == "breakout"]
    assert breakout == standalone.to_state()  # it saw every candle, though it was not active


def scripted(i: int) -> str:
    return ("bull", "neutral", "bull", "bear")[(i // 150) % 4]


@pytest.mark.parametrize("mode", ["keep", "reduce", "close"])
def test_restart_from_saved_state_gives_identical_intents(mode: str) -> None:
    whole, positions, _ = drive(orchestrator(mode), CANDLES, scripted)
    assert {x.strategy for _, x in whole} >= {"sma_cross", "breakout"}
    cut = 777
    first = orchestrator(mode)
    head, _, _ = drive(first, CANDLES[:cut], scripted)
    restored = StrategyOrchestrator.from_state(json.loads(json.dumps(first.to_state())),
                                               first.selector, first.handoff)
    tail, _, _ = drive(restored, CANDLES[cut:], scripted, positions[cut], start=cut)
    assert [(i, x.model_dump_json()) for i, x in head + tail] == [(i, x.model_dump_json()) for i, x in whole]


def test_every_intent_has_regime_strategy_and_params_in_its_trace() -> None:
    got, _, _ = drive(orchestrator("reduce"), CANDLES, scripted)
    for i, intent in got:
        assert intent.trace["regime"] == scripted(i)
        assert intent.trace["strategy"] == intent.strategy
        assert isinstance(intent.trace["params"], dict)
        assert intent.trace["candle"]["open_time"] == CANDLES[i].open_time


class _Boom(SmaCross):
    name = "boom"

    def on_candle(self, candle, signals, position):
        if candle.open_time >= CANDLES[300].open_time:
            raise RuntimeError("broken strategy")
        return super().on_candle(candle, signals, position)


def test_a_failing_strategy_is_disabled_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STRATEGIES, "boom", _Boom)
    config = {"regimes": {"bull": ["sma_cross"], "neutral": ["boom"]}}
    orch = orchestrator("close", config)
    got, _, failures = drive(orch, CANDLES, lambda i: "neutral" if 250 <= i < 500 else "bull")
    assert [(f.strategy, f.open_time, f.message) for f in failures] == [
        ("boom", CANDLES[300].open_time, "broken strategy")]
    assert not [i for i, x in got if 300 <= i < 500 and x.trace["action"] != "handoff_close"]
    assert any(x.strategy == "sma_cross" for i, x in got if i >= 500)
    saved = json.loads(json.dumps(orch.to_state()))
    restored = StrategyOrchestrator.from_state(saved, orch.selector, orch.handoff)
    assert restored.to_state() == saved


def test_a_corrupt_state_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a version 1 StrategyOrchestrator snapshot"):
        StrategyOrchestrator.from_state({}, orchestrator().selector)
    with pytest.raises(ValueError, match="incomplete or malformed"):
        StrategyOrchestrator.from_state({"version": 1, "instruments": {"k": {}}}, orchestrator().selector)


def technical(candle: CandleClosed, regime: str) -> TechnicalSignal:
    confidence = Confidence(mean=0.5, lower=0.1, upper=0.9, level=0.9, hits=0, trials=0, regime=regime)
    return TechnicalSignal(exchange=candle.exchange, symbol=candle.symbol, timeframe=candle.timeframe,
                           open_time=candle.open_time, close=candle.close, regime=regime, indicators={},
                           decision=Decision(action="hold", reason="test", confidence=confidence))


def test_without_a_regime_the_signals_regime_is_used_and_recorded_in_the_trace() -> None:
    orch = orchestrator()
    position, got = Position(), []
    for candle in CANDLES[:400]:
        step = orch.on_candle(candle, technical(candle, "bull"), position)
        got.extend(step.intents)
        position = apply_fills(position, step.intents)
    assert got
    for intent in got:
        assert (intent.strategy, intent.trace["regime"]) == ("sma_cross", "bull")
        expected = {"open_time": intent.trace["candle"]["open_time"], "regime": "bull", "decision": "hold"}
        assert intent.trace["technical"] == expected
