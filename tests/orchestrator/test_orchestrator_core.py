"""The orchestrator agent's core flow on real candles: regimes, traced intents, an exact restart, decisions.

A stand-in for execution fills every intent at once, so positions move and strategies exit and
hand off as they would live. Decisions go to a fresh Postgres database.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import structlog
from orchestrator_data import fill_of, real_candles
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.base import AgentDeps
from agents.orchestrator import OrchestratorAgent, OrchestratorCore
from config.settings import OrchestratorConfig
from infra import Endpoints
from memory.database import create_engine
from memory.decision_log import DecisionLog
from memory.migrations import upgrade
from memory.ports import InMemoryStateStore
from orchestrator.selector import SelectorConfigError, default_strategies_path
from strategies.base import decision_id
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed
from topics.serialization import encode
from topics.system import AlertRaised
from topics.trading import OrderIntent

CANDLES = real_candles()
CANDLES_ONLY = OrchestratorConfig(signals=False)  # these tests feed candles alone


@pytest.fixture(scope="module")
async def engine(endpoints: Endpoints) -> AsyncIterator[AsyncEngine]:
    """An engine on a database created (and migrated) for this module and dropped after it."""
    name = f"cryptiq_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(endpoints.postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(endpoints.postgres_url)._replace(path=f"/{name}"))
    engine = create_engine(url)
    try:
        await upgrade(url)
        yield engine
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def new_agent(store: InMemoryStateStore, log: DecisionLog | None = None) -> OrchestratorAgent:
    agent = OrchestratorAgent(AgentDeps(store=store, log=structlog.get_logger("test")), decisions=log,
                              config=CANDLES_ONLY)
    await agent.start()
    return agent


async def drive(agent: OrchestratorAgent, candles: list[Envelope[CandleClosed]]) -> list[Envelope[Event]]:
    """Each candle, then the fill of each intent it caused (as execution would report it)."""
    out: list[Envelope[Event]] = []
    for env in candles:
        produced = list(await agent.handle(env))  # type: ignore[arg-type]
        out.extend(produced)
        for made in produced:
            if isinstance(made.payload, OrderIntent):
                assert not await agent.handle(fill_of(made))  # type: ignore[arg-type]
    await agent.checkpoint()
    return out


async def test_candles_become_regimes_and_traced_intents_with_deterministic_ids() -> None:
    out = await drive(await new_agent(InMemoryStateStore()), CANDLES)
    kinds = Counter(env.type for env in out)
    assert kinds["RegimeChanged"] >= 4, kinds
    assert kinds["OrderIntent"] >= 5, kinds
    by_id = {env.event_id: env for env in CANDLES}
    intents = [env for env in out if isinstance(env.payload, OrderIntent)]
    assert {env.payload.side for env in intents} == {"buy", "sell"}  # fills moved positions: exits happen
    assert any(env.payload.reduce_only for env in intents)
    for env in intents:
        intent = env.payload
        trace = intent.trace
        assert trace["regime"] in {"bull", "bear", "neutral", "high_volatility", "unknown"}
        assert trace["strategy"] == intent.strategy
        assert trace["params"]
        if not str(trace["action"]).startswith("handoff_"):  # a hand-off closes the old one's position
            assert trace["active"] == {"strategy": intent.strategy, "params": trace["params"]}
        assert env.causation_id is not None
        candle = by_id[env.causation_id].payload
        assert isinstance(candle, CandleClosed)
        assert trace["candle"]["open_time"] == candle.open_time
        assert intent.decision_id == decision_id(intent.strategy, candle, str(trace["action"]))
    regimes = [env for env in out if env.type == "RegimeChanged"]
    assert {env.key for env in regimes} == {env.key for env in CANDLES}
    again = await drive(await new_agent(InMemoryStateStore()), CANDLES)
    assert [encode(env) for env in again] == [encode(env) for env in out]


async def test_a_restart_from_saved_state_continues_byte_for_byte(engine: AsyncEngine) -> None:
    log = DecisionLog(engine)
    whole = await drive(await new_agent(InMemoryStateStore()), CANDLES)
    store = InMemoryStateStore()
    half = len(CANDLES) // 2
    first = await new_agent(store, log)
    before = await drive(first, CANDLES[:half])
    second = await new_agent(store, log)  # a new process: everything from the store
    tail = [env for env in before if isinstance(env.payload, OrderIntent)][-3:]
    assert tail
    for env in tail:  # the uncommitted tail read again: its fills are not counted twice
        assert not await second.handle(fill_of(env))  # type: ignore[arg-type]
    after = await drive(second, CANDLES[half - 50:])  # candles it already saw give nothing
    assert [encode(env) for env in before + after] == [encode(env) for env in whole]
    intents = [env for env in whole if isinstance(env.payload, OrderIntent)]
    assert len({env.payload.decision_id for env in intents}) == len(intents)

    stored = await log.query(agent="orchestrator", limit=10_000)
    assert sorted(record.id for record in stored) == sorted(env.payload.decision_id for env in intents)
    sample = intents[len(intents) // 2]
    record = await log.get(sample.payload.decision_id)
    assert record is not None
    assert record.kind == "intent"
    assert record.symbol == sample.payload.symbol
    assert record.input_ids == [sample.causation_id]
    assert record.output_ids == [sample.event_id]
    assert record.trace == sample.payload.trace
    assert record.ts == sample.ts
    assert record.reasons == [sample.payload.trace["reason"]]


async def test_positions_are_the_signed_sum_of_fills() -> None:
    agent = await new_agent(InMemoryStateStore())
    out = await drive(agent, CANDLES)
    expected: dict[str, Decimal] = Counter()  # type: ignore[assignment]
    for env in out:
        if isinstance(env.payload, OrderIntent):
            fill = fill_of(env).payload
            signed = fill.quantity if fill.side == "buy" else -fill.quantity
            expected[f"{fill.exchange}:{fill.symbol}"] += signed
    assert agent.core.positions == dict(expected.items())


async def test_strategies_yaml_is_reloaded_when_it_changes_and_a_bad_edit_alerts_once(tmp_path: Path) -> None:
    path = tmp_path / "strategies.yaml"
    shipped = default_strategies_path().read_text(encoding="utf-8")
    path.write_text("version: 1\ndefault: risk_off\nregimes:\n  neutral: [risk_off]\n", encoding="utf-8")
    os.utime(path, (1_000, 1_000))
    config = OrchestratorConfig(strategies_path=path, reload_every=10, signals=False)
    agent = OrchestratorAgent(AgentDeps(store=InMemoryStateStore(), log=structlog.get_logger("test")))
    agent.core = OrchestratorCore(config)
    third = len(CANDLES) // 3
    quiet = await drive(agent, CANDLES[:third])
    assert not [env for env in quiet if env.type in ("OrderIntent", "AlertRaised")]  # risk_off when flat

    path.write_text("version: 1\nregimes:\n  neutral: [no_such_strategy]\n", encoding="utf-8")
    os.utime(path, (2_000, 2_000))
    bad = await drive(agent, CANDLES[third:2 * third])
    alerts = [env.payload for env in bad if isinstance(env.payload, AlertRaised)]
    assert len(alerts) == 1
    assert alerts[0].name == "orchestrator.strategies_invalid"
    assert "no_such_strategy" in alerts[0].message
    assert str(path) in alerts[0].message
    assert not [env for env in bad if env.type == "OrderIntent"]  # still the previous config

    path.write_text(shipped, encoding="utf-8")
    os.utime(path, (3_000, 3_000))
    fixed = await drive(agent, CANDLES[2 * third:])
    strategies = {env.payload.strategy for env in fixed if isinstance(env.payload, OrderIntent)}
    assert strategies & {"trend", "mean_reversion", "breakout"}, strategies


def test_an_invalid_strategies_file_stops_the_agent_with_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "strategies.yaml"
    path.write_text("version: 1\nregimes:\n  sideways: [risk_off]\n", encoding="utf-8")
    with pytest.raises(SelectorConfigError, match=r"strategies\.yaml.*unknown regime 'sideways'"):
        OrchestratorCore(OrchestratorConfig(strategies_path=path))
