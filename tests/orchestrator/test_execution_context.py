"""The ExecutionContext the orchestrator keeps: streams, open intents and their tasks, agents, pins.

Driven with real candles; risk's answers and the orders are built here the way the risk and
execution agents publish them (a rejection for every fourth intent, the others filled), so the
open intents, the task workflow, the published stream states and the linked outcomes can be
checked exactly. Recovery is checked from Redis's stand-in (the state store) and from Postgres.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import structlog
from orchestrator_data import fill_of, real_candles
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.base import AgentDeps
from agents.orchestrator import OrchestratorAgent
from config.errors import DomainError
from config.settings import OrchestratorConfig
from memory.context_snapshots import ContextSnapshots
from memory.decision_log import DecisionLog
from memory.ports import InMemoryStateStore
from orchestrator.context import REDIS_KEY, ExecutionContext
from topics.control import StrategyOverridden
from topics.envelope import Envelope
from topics.events import Event
from topics.market import timeframe_ms
from topics.orchestration import StreamStateChanged
from topics.orders import OrderUpdated
from topics.system import AgentHeartbeat
from topics.trading import OrderIntent, PortfolioSnapshot, RiskDecision

CANDLES = real_candles(rows=600)


def risk_answer(intent_env: Envelope[Event], *, reject: bool) -> Envelope[RiskDecision]:
    intent = intent_env.payload
    assert isinstance(intent, OrderIntent)
    size = Decimal(0) if reject else (intent.size or Decimal("0.5"))
    decision = RiskDecision(
        decision_id=intent.decision_id, strategy=intent.strategy, exchange=intent.exchange,
        symbol=intent.symbol, side=intent.side, entry_type="market",
        verdict="rejected" if reject else "approved", size=size, risk_amount=Decimal(0),
        reasons=["max open positions reached" if reject else "within limits"],
        portfolio=PortfolioSnapshot(ts=intent_env.ts, equity=Decimal(10_000)),
    )
    return Envelope.create(decision, key=intent.key, ts=intent_env.ts, source="risk", caused_by=intent_env)


def order_update(intent_env: Envelope[Event], status: str, seq: int) -> Envelope[OrderUpdated]:
    intent = intent_env.payload
    assert isinstance(intent, OrderIntent)
    quantity = intent.size or Decimal("0.5")
    price = Decimal(str(intent.trace["candle"]["close"]))  # type: ignore[index]
    filled = quantity if status == "filled" else Decimal(0)
    order = OrderUpdated(
        client_order_id=intent.decision_id[:36], decision_id=intent.decision_id, exchange=intent.exchange,
        symbol=intent.symbol, side=intent.side, order_type="market", time_in_force="IOC", quantity=quantity,
        status=status, filled_quantity=filled, filled_notional=filled * price, seq=seq,  # type: ignore[arg-type]
        ts_event=intent_env.ts,
    )
    return Envelope.create(order, key=intent.key, ts=intent_env.ts, source="execution", caused_by=intent_env,
                           discriminator=str(seq))


async def new_agent(store: InMemoryStateStore, log: DecisionLog | None = None) -> OrchestratorAgent:
    agent = OrchestratorAgent(AgentDeps(store=store, log=structlog.get_logger("test")), decisions=log,
                              config=OrchestratorConfig(signals=False))
    await agent.start()
    return agent


async def trade(
    agent: OrchestratorAgent, candles: list[Any], *, settle: bool = True
) -> list[Envelope[Event]]:
    """Candles in; every fourth intent rejected by risk, the others submitted and filled (if `settle`)."""
    out: list[Envelope[Event]] = []
    count = 0
    for env in candles:
        produced = list(await agent.handle(env))
        out.extend(produced)
        for made in produced:
            if not isinstance(made.payload, OrderIntent) or not settle:
                continue
            count += 1
            reject = count % 4 == 0
            out.extend(await agent.handle(risk_answer(made, reject=reject)))  # type: ignore[arg-type]
            if not reject:
                out.extend(await agent.handle(order_update(made, "submitted", 1)))  # type: ignore[arg-type]
                out.extend(await agent.handle(fill_of(made)))  # type: ignore[arg-type]
                out.extend(await agent.handle(order_update(made, "filled", 2)))  # type: ignore[arg-type]
    await agent.checkpoint()
    return out


async def test_the_context_follows_intents_through_risk_and_execution(engine: AsyncEngine) -> None:
    store = InMemoryStateStore()
    log = DecisionLog(engine)
    agent = await new_agent(store, log)
    out = await trade(agent, CANDLES)
    intents = [env.payload for env in out if isinstance(env.payload, OrderIntent)]
    assert len(intents) >= 5
    context = ExecutionContext.from_json(await store.load(REDIS_KEY))  # type: ignore[arg-type]

    assert set(context.streams) == {env.key for env in CANDLES}
    for stream, state in context.streams.items():
        assert state.last_candle == max(env.payload.open_time for env in CANDLES if env.key == stream)
        assert state.regime in {"bull", "bear", "neutral", "high_volatility"}
        assert state.strategy is not None
        assert state.open_intents == ()  # every intent was rejected or filled
        active = agent.core.switching.active(stream)
        assert active is not None
        assert (state.strategy, state.params) == (active.strategy, active.params.model_dump(mode="json"))
        position = agent.core.positions.get(f"{state.exchange}:{state.symbol}", Decimal(0))
        assert state.position == position
    for number, intent in enumerate(intents, start=1):
        risk = context.tasks.get(f"{intent.decision_id}/risk")
        execution = context.tasks.get(f"{intent.decision_id}/execution")
        assert risk is not None
        assert execution is not None
        assert execution.depends_on == (risk.task,)
        assert risk.status == "done"
        assert execution.status == ("skipped" if number % 4 == 0 else "done")
        assert execution.attempts == (0 if number % 4 == 0 else 1)
    assert context.as_of == max(env.ts for env in CANDLES)

    # Every change of a stream went out on orchestrator.state; the last one per key is the stream's state.
    states = [env for env in out if isinstance(env.payload, StreamStateChanged)]
    last = {env.key: env.payload for env in states}
    assert set(last) == set(context.streams)
    for stream, payload in last.items():
        assert payload.open_intents == ()
        assert payload.regime == context.streams[stream].regime
    assert len({env.event_id for env in states}) == len(states)  # distinct ids: none is deduplicated away
    opened = [env for env in states if env.payload.open_intents]
    assert opened  # intents were seen open between the candle and the answer

    # Outcomes were linked to the decisions: rejected with risk's reasons, or filled at the fill's price.
    for number, intent in enumerate(intents, start=1):
        record = await log.get(intent.decision_id)
        assert record is not None
        assert record.outcome is not None
        if number % 4 == 0:
            assert record.outcome["status"] == "rejected"
            assert record.outcome["reasons"] == ["max open positions reached"]
        else:
            assert record.outcome["status"] == "filled"
            assert Decimal(record.outcome["average_price"]) == Decimal(str(intent.trace["candle"]["close"]))
    with_outcome = await log.query(agent="orchestrator", outcome="rejected", limit=10_000)
    rejected = {intent.decision_id for number, intent in enumerate(intents, 1) if number % 4 == 0}
    assert {record.id for record in with_outcome} == rejected


async def test_open_intents_stay_open_until_answered_or_expired_and_heartbeats_fill_agents() -> None:
    agent = await new_agent(InMemoryStateStore())
    horizon = 10 * timeframe_ms(CANDLES[0].payload.timeframe)  # intent_timeout_candles of the stream
    made: list[Envelope[Event]] = []
    for candle in CANDLES:  # until an intent is just made and an older one has waited 10 candles
        out = await trade(agent, [candle], settle=False)
        made += [env for env in out if isinstance(env.payload, OrderIntent)]
        if made and made[-1].ts == candle.ts and candle.ts - made[0].ts >= horizon:
            break
    now = made[-1].ts
    # Unanswered for 10 candles of its stream: expired, its risk task failed; the others still open.
    fresh = {env.payload.decision_id for env in made if now - env.ts < horizon}  # type: ignore[union-attr]
    stale = {env.payload.decision_id for env in made} - fresh  # type: ignore[union-attr]
    assert fresh
    assert stale
    context = agent.core.tracker.context
    open_ids = {item.decision_id for state in context.streams.values() for item in state.open_intents}
    assert open_ids == fresh
    assert all(context.tasks[f"{i}/risk"].status == "running" for i in fresh)
    assert all(context.tasks[f"{i}/execution"].status == "pending" for i in fresh)
    for decision_id in stale:
        risk, execution = context.tasks[f"{decision_id}/risk"], context.tasks[f"{decision_id}/execution"]
        assert (risk.status, risk.last_error) == ("failed", "expired: no risk decision within 10 candles")
        assert execution.status == "skipped"

    beat = AgentHeartbeat(agent="risk", instance="host:1", status="ready", processed=42, dead_lettered=1,
                          lag=7, last_error="RetriableError: redis away")
    beat_env = Envelope.create(beat, key="risk:host:1", ts=1_700_000_000_000, source="risk")
    assert await agent.handle(beat_env) == []
    health = agent.core.tracker.context.agents["risk"]
    assert (health.processed, health.dead_lettered, health.lag, health.last_error) == (
        42, 1, 7, "RetriableError: redis away")
    assert health.last_heartbeat == 1_700_000_000_000


async def test_an_operator_pin_switches_the_strategy_at_the_next_candle_and_survives_a_restart() -> None:
    store = InMemoryStateStore()
    agent = await new_agent(store)
    await trade(agent, CANDLES[:200])
    stream = CANDLES[0].key
    before = agent.core.switching.active(stream)
    assert before is not None
    pinned = "breakout" if before.strategy != "breakout" else "mean_reversion"
    command = StrategyOverridden(stream=stream, strategy=pinned, params={}, actor="alice", reason="test",
                                 at=1)
    out = await agent.handle(Envelope.create(command, key=stream, ts=CANDLES[199].ts, source="api"))
    assert [env.payload.pinned for env in out if isinstance(env.payload, StreamStateChanged)] == [True]
    await trade(agent, CANDLES[200:260])
    state = agent.core.tracker.context.streams[stream]
    assert (state.strategy, state.pinned) == (pinned, True)

    restarted = await new_agent(store)  # pins and context come back from the store
    assert restarted.core.switching.pins[stream].strategy == pinned
    assert restarted.core.tracker.context.streams[stream].pinned
    await trade(restarted, CANDLES[260:300])
    assert restarted.core.tracker.context.streams[stream].strategy == pinned

    release = command.model_copy(update={"strategy": None, "reason": "done"})
    await restarted.handle(Envelope.create(release, key=stream, ts=CANDLES[299].ts, source="api"))
    assert stream not in restarted.core.switching.pins
    assert not restarted.core.tracker.context.streams[stream].pinned

    unknown = command.model_copy(update={"strategy": "no_such_strategy"})
    with pytest.raises(DomainError, match="unknown strategy 'no_such_strategy'"):
        await restarted.handle(Envelope.create(unknown, key=stream, ts=CANDLES[299].ts, source="api"))


async def test_without_redis_state_the_context_comes_back_from_the_postgres_snapshot(
    engine: AsyncEngine,
) -> None:
    log = DecisionLog(engine)
    store = InMemoryStateStore()
    agent = await new_agent(store, log)
    await trade(agent, CANDLES[:400])
    saved = agent.core.tracker.context
    latest = await ContextSnapshots(engine).latest("orchestrator")
    assert latest is not None
    assert latest[0] == saved.as_of

    await store.delete(REDIS_KEY)  # Redis lost (e.g. an embedded server wiped): Postgres has a snapshot
    recovered = await new_agent(store, log)
    assert recovered.core.tracker.context == ExecutionContext.model_validate(latest[1])
    assert set(recovered.core.tracker.context.streams) == set(saved.streams)
