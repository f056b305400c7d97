"""The orchestrator agent on the real broker, Redis and Postgres: candles in, the core's intents out.

Real candles of two symbols renamed to unique names go in through plain aiokafka; what comes out
on strategy.intents and regime must be byte for byte what the agent's core gives on the same
candles, and every intent must be a decision in Postgres once the host stopped (it checkpoints).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from orchestrator_data import real_candles

from agents.orchestrator import OrchestratorAgent, OrchestratorCore
from agents.runtime import AgentHost
from busio import collect, end_offsets, produce
from config import Settings
from config.settings import OrchestratorConfig
from infra import Endpoints
from memory.database import create_engine
from memory.decision_log import DecisionLog
from topics.recording import seek_to_log_end
from topics.registry import MARKET_CANDLES, REGIME, STRATEGY_INTENTS
from topics.serialization import encode


async def start_group_at_log_end(kafka: dict[str, Any], group: str, topic: str) -> None:
    """Commit the group's offsets at the end of `topic`, so the agent skips what other tests published."""
    consumer = AIOKafkaConsumer(**kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.commit(dict(await seek_to_log_end(consumer, partitions)))
    finally:
        await consumer.stop()


async def test_candles_on_the_broker_become_intents_and_recorded_decisions(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any],
) -> None:
    suffix = uuid.uuid4().hex[:8].upper()
    names = {"BTC/USDT": f"BTC{suffix}/USDT", "ETH/USDT": f"ETH{suffix}/USDT"}
    config = OrchestratorConfig(regime_model=f"regime_{suffix}",  # none registered: the rule detector
                                signals=False)  # candles alone: no technical agent runs here
    candles = real_candles(rows=800, rename=names)
    core = OrchestratorCore(config)
    expected = [out for env in candles for out in core.handle(env)]
    want = {topic: [encode(env) for env in expected if (env.type == kind)]
            for topic, kind in ((STRATEGY_INTENTS.name, "OrderIntent"), (REGIME.name, "RegimeChanged"))}
    assert len(want[STRATEGY_INTENTS.name]) >= 3
    assert len(want[REGIME.name]) >= 2

    starts = {topic: await end_offsets(kafka, topic) for topic in want}
    await start_group_at_log_end(kafka, OrchestratorAgent.name, MARKET_CANDLES.name)
    host = AgentHost(OrchestratorAgent, settings.model_copy(update={"orchestrator": config}), endpoints)
    await host.start()

    def ours(records: list[Any]) -> list[bytes]:
        return [r.value for r in records if suffix in orjson.loads(r.value)["payload"]["symbol"]]

    try:
        await host.wait_ready(30)
        await produce(kafka, MARKET_CANDLES.name, candles)
        for topic, values in want.items():
            count = len(values)
            got = await collect(kafka, topic, start=starts[topic], timeout=60,
                                until=lambda records, n=count: len(ours(records)) >= n)
            assert sorted(ours(got)) == sorted(values), topic  # partitions interleave keys; bytes must match
    finally:
        await host.stop()

    engine = create_engine(endpoints.postgres_url)
    try:
        log = DecisionLog(engine)
        stored = [record for symbol in names.values() for record in await log.query(
            agent="orchestrator", symbol=symbol, limit=10_000)]
    finally:
        await engine.dispose()
    intents = [orjson.loads(value)["payload"] for value in want[STRATEGY_INTENTS.name]]
    assert sorted(record.id for record in stored) == sorted(intent["decision_id"] for intent in intents)
    assert all(record.kind == "intent" and record.trace and "regime" in record.trace for record in stored)
