"""The optimiser's rankings (`strategies.rankings`) in the orchestrator agent, on real candles.

A stream's StrategyRanked events switch a regime's strategy to the best-ranked one with its optimised
parameters from the next candle; every intent's trace says where its strategy came from; the
rankings are kept with the agent's state; invalid rankings are refused; a regime with one ranked
strategy keeps strategies.yaml's choice.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from orchestrator_data import fill_of, real_candles

from agents.base import AgentDeps
from agents.orchestrator import OrchestratorAgent
from config.errors import DomainError
from config.settings import OrchestratorConfig
from memory.ports import InMemoryStateStore
from orchestrator.selector import REGIMES, Choice
from strategies.breakout import BreakoutParams
from strategies.sma_cross import SmaCrossParams
from topics.backtest import StrategyRanked
from topics.control import StrategyOverridden
from topics.envelope import Envelope
from topics.events import Event
from topics.trading import OrderIntent

CANDLES = real_candles(rows=700)  # 1,400 candles of two streams; the regime detector is warm after ~500
SPLIT = 800  # the rankings arrive after this many candles
BTC, ETH = "binance:BTC/USDT:1h", "binance:ETH/USDT:1h"
FAST_SMA = {"fast": 4, "slow": 12}  # not in strategies.yaml: only the ranking can bring these params
WIDE_BREAKOUT = {"period": 30, "exit_period": 12}


def ranking(strategy: str, regime: str | None, score: float, params: dict[str, Any] | None = None, *,
            symbol: str = "BTC/USDT", at: int = 1_000) -> Envelope[Event]:
    event = StrategyRanked(
        exchange="binance", symbol=symbol, timeframe="1h", strategy=strategy, params=params or {},
        regime=regime, metric="sharpe", score=score, feasible=True, bars=400,  # type: ignore[arg-type]
        out_of_sample={"sharpe": score}, run_id=f"run-{symbol}-{strategy}-{at}", at=at,
    )
    return Envelope.create(event, key=event.key, ts=at, source="optimizer")  # type: ignore[return-value]


def btc_ranks_fast_sma_first() -> list[Envelope[Event]]:
    """BTC: sma_cross(4, 12) ahead of trend in every regime."""
    return [env for regime in REGIMES for env in (ranking("sma_cross", regime, 1.5, FAST_SMA),
                                                  ranking("trend", regime, 0.5))]


def eth_ranks_wide_breakout_first() -> list[Envelope[Event]]:
    return [env for regime in REGIMES for env in (
        ranking("breakout", regime, 0.9, WIDE_BREAKOUT, symbol="ETH/USDT"),
        ranking("sma_cross", regime, -0.3, FAST_SMA, symbol="ETH/USDT"))]


async def new_agent(store: InMemoryStateStore) -> OrchestratorAgent:
    agent = OrchestratorAgent(AgentDeps(store=store, log=structlog.get_logger("test")),
                              config=OrchestratorConfig(signals=False))
    await agent.start()
    return agent


async def drive(agent: OrchestratorAgent, inputs: list[Envelope[Event]]) -> list[OrderIntent]:
    """Each input in order; every intent filled at once. The intents made, in order."""
    intents = []
    for env in inputs:
        for made in await agent.handle(env):
            if isinstance(made.payload, OrderIntent):
                intents.append(made.payload)
                await agent.handle(fill_of(made))  # type: ignore[arg-type]
    await agent.checkpoint()
    return intents


def of(stream: str, intents: list[OrderIntent]) -> list[OrderIntent]:
    return [intent for intent in intents if f"{intent.exchange}:{intent.symbol}:1h" == stream]


async def test_rankings_switch_each_stream_to_its_best_ranked_strategy_with_optimised_params() -> None:
    agent = await new_agent(InMemoryStateStore())
    before = await drive(agent, CANDLES[:SPLIT])
    assert before
    assert {intent.trace["selected_by"] for intent in before} == {"strategies.yaml"}
    assert all(intent.strategy != "sma_cross" for intent in before)

    assert await drive(agent, [*btc_ranks_fast_sma_first(), *eth_ranks_wide_breakout_first()]) == []
    assert agent.core.switching.active(BTC).strategy != "sma_cross"  # type: ignore[union-attr]  # next candle
    after = await drive(agent, CANDLES[SPLIT:])

    fast_sma = Choice("sma_cross", SmaCrossParams(**FAST_SMA))
    wide_breakout = Choice("breakout", BreakoutParams(**WIDE_BREAKOUT))
    assert (agent.core.switching.active(BTC), agent.core.switching.active(ETH)) == (fast_sma, wide_breakout)
    btc = of(BTC, after)
    assert len(btc) >= 5, "the fast sma_cross trades on 300 hourly BTC candles"
    for intent in btc:
        assert intent.trace["active"] == {"strategy": "sma_cross", "params": fast_sma.params.model_dump()}
        assert intent.trace["selected_by"] == "stream_rankings"
        assert intent.strategy == "sma_cross" or intent.trace["action"] == "handoff_close"
    for intent in of(ETH, after):
        assert intent.trace["active"] == {"strategy": "breakout", "params": wide_breakout.params.model_dump()}
    state = agent.core.tracker.context.streams[BTC]
    assert (state.strategy, state.params) == ("sma_cross", fast_sma.params.model_dump(mode="json"))


async def test_a_stream_without_rankings_of_its_own_follows_the_rankings_of_every_stream() -> None:
    agent = await new_agent(InMemoryStateStore())
    await drive(agent, [*btc_ranks_fast_sma_first(), *CANDLES[:SPLIT]])
    fast_sma = Choice("sma_cross", SmaCrossParams(**FAST_SMA))
    assert agent.core.switching.active(ETH) == fast_sma
    assert agent.core.switching.selector.selected_by("bull", ETH) == "rankings"
    assert agent.core.switching.selector.selected_by("bull", BTC) == "stream_rankings"


async def test_an_operators_pin_wins_over_the_rankings() -> None:
    agent = await new_agent(InMemoryStateStore())
    pin = StrategyOverridden(stream=BTC, strategy="breakout", params={}, actor="ops", reason="test",
                             at=CANDLES[0].ts)
    pinned = Envelope.create(pin, key=BTC, ts=CANDLES[0].ts, source="api")
    intents = await drive(agent, [*btc_ranks_fast_sma_first(), pinned, *CANDLES])
    assert agent.core.switching.active(BTC) == Choice("breakout", BreakoutParams())
    assert of(BTC, intents)
    assert {i.trace["selected_by"] for i in of(BTC, intents)} == {"pin"}


async def test_rankings_survive_a_restart_and_it_continues_with_identical_intents() -> None:
    inputs = [*CANDLES[:SPLIT], *btc_ranks_fast_sma_first(), *CANDLES[SPLIT:]]
    uninterrupted = await drive(await new_agent(InMemoryStateStore()), inputs)

    store = InMemoryStateStore()
    first = await drive(await new_agent(store), inputs[:SPLIT + 100])
    restarted = await new_agent(store)
    assert restarted.core.rankings.keys() == {env.key for env in btc_ranks_fast_sma_first()}
    assert restarted.core.switching.selector.selected_by("bull", BTC) == "stream_rankings"
    rest = await drive(restarted, inputs[SPLIT + 100:])
    assert [i.decision_id for i in first + rest] == [i.decision_id for i in uninterrupted]
    assert first + rest == uninterrupted
    assert any(i.trace["selected_by"] == "stream_rankings" for i in rest)


async def test_an_older_runs_ranking_does_not_replace_a_newer_one() -> None:
    agent = await new_agent(InMemoryStateStore())
    newer, older = ranking("trend", "bull", 2.0, at=5_000), ranking("trend", "bull", -2.0, at=4_000)
    await drive(agent, [newer, older])
    assert agent.core.rankings[newer.key].at == 5_000


@pytest.mark.parametrize(("env", "message"), [
    (ranking("no_such_strategy", "bull", 1.0), r"ranking binance:BTC/USDT:1h:bull:no_such_strategy \(run "
                                               r"run-BTC/USDT-no_such_strategy-1000\): unknown strategy"),
    (ranking("sma_cross", "bear", 1.0, {"fast": 0}), r"\.params: strategy sma_cross: parameter fast=0"),
])
async def test_an_invalid_ranking_is_a_domain_error_and_changes_nothing(env: Envelope[Event],
                                                                        message: str) -> None:
    agent = await new_agent(InMemoryStateStore())
    selector = agent.core.switching.selector
    with pytest.raises(DomainError, match=message):
        await agent.handle(env)
    assert agent.core.rankings == {}
    assert agent.core.switching.selector is selector


async def test_a_regime_with_one_ranked_strategy_keeps_the_yaml_choice() -> None:
    baseline = await drive(await new_agent(InMemoryStateStore()), CANDLES)
    lone = [ranking("sma_cross", regime, 3.0, FAST_SMA) for regime in REGIMES]
    agent = await new_agent(InMemoryStateStore())
    ranked_alone = await drive(agent, [*CANDLES[:100], *lone, *CANDLES[100:]])
    assert len(agent.core.rankings) == len(REGIMES)
    assert len(baseline) >= 5
    assert ranked_alone == baseline
    assert {intent.trace["selected_by"] for intent in ranked_alone} == {"strategies.yaml"}
