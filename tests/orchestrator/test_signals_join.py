"""The orchestrator decides on a candle together with its `signals.technical` event.

Signals come from the real technical core on the same real candles. The two topics are read
independently, so either half of a pair may arrive first: the intents must not depend on that,
they must carry the signals in their trace, and a half still waiting survives a restart.
"""

from __future__ import annotations

import random

import structlog
from orchestrator_data import real_candles

from agents.base import AgentDeps
from agents.orchestrator import OrchestratorAgent
from agents.technical.core import TechnicalCore
from config.settings import OrchestratorConfig, TechnicalConfig
from memory.ports import InMemoryStateStore
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed
from topics.serialization import encode
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent

CANDLES = real_candles(rows=700)


def with_signals() -> list[tuple[Envelope[Event], Envelope[Event]]]:
    """(candle, its signal) for every candle, from the technical core."""
    core = TechnicalCore(TechnicalConfig())
    pairs = []
    for env in CANDLES:
        (signal,) = [out for out in core.handle(env) if isinstance(out.payload, TechnicalSignal)]
        pairs.append((env, signal))
    return pairs


PAIRS = with_signals()


async def new_agent(store: InMemoryStateStore, signals: bool = True) -> OrchestratorAgent:
    agent = OrchestratorAgent(AgentDeps(store=store, log=structlog.get_logger("test")),
                              config=OrchestratorConfig(signals=signals))
    await agent.start()
    return agent


async def feed(agent: OrchestratorAgent, inputs: list[Envelope[Event]]) -> list[Envelope[Event]]:
    out: list[Envelope[Event]] = []
    for env in inputs:
        out.extend(await agent.handle(env))
    await agent.checkpoint()
    return out


def intents(out: list[Envelope[Event]]) -> list[bytes]:
    return [encode(env) for env in out if isinstance(env.payload, OrderIntent)]


async def test_a_candle_waits_for_its_signals() -> None:
    agent = await new_agent(InMemoryStateStore())
    candle, signal = PAIRS[0]
    assert isinstance(candle.payload, CandleClosed)
    assert await agent.handle(candle) == []
    assert candle.key not in agent.core.last_open_time  # not decided on: waiting for its signals
    await agent.handle(signal)
    assert agent.core.last_open_time[candle.key] == candle.payload.open_time
    assert await agent.handle(candle) == []  # read again (after a crash): already decided on


async def test_intents_do_not_depend_on_which_half_of_a_pair_arrives_first() -> None:
    candle_first = await feed(await new_agent(InMemoryStateStore()), [env for pair in PAIRS for env in pair])
    made = [env for env in candle_first if isinstance(env.payload, OrderIntent)]
    assert len(made) >= 3
    by_candle = {candle.event_id: signal.payload for candle, signal in PAIRS}
    for env in made:  # the technical agent's view went into the decision's trace
        signal = by_candle[env.causation_id]
        assert env.payload.trace["technical"] == {"open_time": signal.open_time, "regime": signal.regime,
                                                  "decision": signal.decision.action}

    shuffled: list[Envelope[Event]] = []
    rng = random.Random(7)
    for candle, signal in PAIRS:
        shuffled.extend((signal, candle) if rng.random() < 0.5 else (candle, signal))
    signal_first = await feed(await new_agent(InMemoryStateStore()), shuffled)
    assert intents(signal_first) == intents(candle_first)
    # The technical agent far behind (every candle waits) or far ahead (every signal waits).
    lagging = await feed(await new_agent(InMemoryStateStore()), [c for c, _ in PAIRS] + [s for _, s in PAIRS])
    assert intents(lagging) == intents(candle_first)
    leading = await feed(await new_agent(InMemoryStateStore()), [s for _, s in PAIRS] + [c for c, _ in PAIRS])
    assert intents(leading) == intents(candle_first)


async def test_a_waiting_half_survives_a_restart() -> None:
    whole = await feed(await new_agent(InMemoryStateStore()), [env for pair in PAIRS for env in pair])
    store = InMemoryStateStore()
    first = await new_agent(store)
    cut = len(PAIRS) // 2
    head = await feed(first, [env for pair in PAIRS[:cut] for env in pair] + [PAIRS[cut][0]])
    second = await new_agent(store)  # the candle at `cut` waits in the store for its signal
    tail = await feed(second, [PAIRS[cut][1], *(env for pair in PAIRS[cut + 1 :] for env in pair)])
    assert intents(head + tail) == intents(whole)
