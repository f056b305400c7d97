"""The technical agent on the real broker, Redis and Postgres: a registered model, a restart in the middle.

Real candles go in through plain aiokafka; what comes out on signals.technical and alerts must be
byte for byte what the core gives on the whole series in one go — so the model came from the
registry, and the second host continued from the state the first saved in Redis.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from technical_data import HORIZON, envelopes_of, raw_rows, run

from agents.runtime import AgentHost
from agents.technical import TechnicalAgent, TechnicalCore
from agents.technical.model import DecisionModel, save_model
from busio import collect, end_offsets, produce
from config import Settings
from config.settings import AlertRule, TechnicalConfig
from infra import Endpoints
from memory.database import create_engine
from memory.migrations import upgrade
from memory.model_registry import ModelRegistry
from topics.envelope import Envelope
from topics.recording import seek_to_log_end
from topics.registry import ALERTS, MARKET_CANDLES, SIGNALS_TECHNICAL
from topics.serialization import encode

ROWS = 300


async def start_group_at_log_end(kafka: dict[str, Any], group: str, topic: str) -> None:
    """Commit the group's offsets at the end of `topic`, so the agent skips what other tests published."""
    consumer = AIOKafkaConsumer(**kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        ends = await seek_to_log_end(consumer, partitions)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


async def register(endpoints: Endpoints, name: str, model: DecisionModel, folder: Path) -> int:
    await upgrade(endpoints.postgres_url)
    path, digest = save_model(model, folder)
    engine = create_engine(endpoints.postgres_url)
    try:
        registry = ModelRegistry(engine)
        record = await registry.register(name, path=str(path), sha256=digest, params=model.params, metrics={})
    finally:
        await engine.dispose()
    return record.version


async def run_host(settings: Settings, endpoints: Endpoints, kafka: dict[str, Any],
                   candles: list[Envelope[Any]]) -> None:
    """One agent process's life: start, take `candles`, handle all of them, stop (commit + checkpoint)."""
    host = AgentHost(TechnicalAgent, settings, endpoints)  # the real Redis state store
    await host.start()
    try:
        await host.wait_ready(30)
        start = await end_offsets(kafka, SIGNALS_TECHNICAL.name)
        await produce(kafka, MARKET_CANDLES.name, candles)
        wanted = {env.event_id for env in candles}
        outputs = await collect(
            kafka, SIGNALS_TECHNICAL.name, start=start, timeout=60,
            until=lambda got: wanted <= {orjson.loads(r.value)["causation_id"] for r in got},
        )
        assert wanted <= {orjson.loads(r.value)["causation_id"] for r in outputs}
    finally:
        await host.stop()


async def test_signals_from_the_registered_model_continue_exactly_across_a_restart(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any], model: DecisionModel, tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:8].upper()
    names = {"BTC/USDT": f"BTC{suffix}/USDT", "ETH/USDT": f"ETH{suffix}/USDT"}
    config = TechnicalConfig(horizon=HORIZON, model_name=f"test_{suffix}", alerts=[
        AlertRule(name=f"oversold_{suffix}", when="rsi_14 < 35", cooldown=12),
    ])
    local = settings.model_copy(update={"technical": config})
    version = await register(endpoints, config.model_name, model, tmp_path)
    model = DecisionModel(model.tree, model.params, version)  # as the agent will load it
    candles = envelopes_of(((symbol, raw_rows(symbol, ROWS)) for symbol in names), rename=names)
    expected = run(TechnicalCore(config, model), candles)
    signal_start = await end_offsets(kafka, SIGNALS_TECHNICAL.name)
    alert_start = await end_offsets(kafka, ALERTS.name)
    await start_group_at_log_end(kafka, TechnicalAgent.name, MARKET_CANDLES.name)

    half = len(candles) // 2
    await run_host(local, endpoints, kafka, candles[:half])
    await run_host(local, endpoints, kafka, candles[half:])  # a new process: state from Redis

    def ours(records: list[Any]) -> dict[str, list[bytes]]:
        """Record values per key, in partition order, without repeats (at-least-once)."""
        by_key: dict[str, list[bytes]] = defaultdict(list)
        seen = set()
        for record in records:
            body = orjson.loads(record.value)
            if suffix in record.key.decode() and body["event_id"] not in seen:
                seen.add(body["event_id"])
                by_key[record.key.decode()].append(record.value)
        return dict(by_key)

    def expected_of(topic: str) -> dict[str, list[bytes]]:
        by_key: dict[str, list[bytes]] = defaultdict(list)
        for env in expected:
            if (topic == SIGNALS_TECHNICAL.name) == (env.type == "TechnicalSignal"):
                by_key[env.key].append(encode(env))
        return dict(by_key)

    want_signals, want_alerts = expected_of(SIGNALS_TECHNICAL.name), expected_of(ALERTS.name)
    signals = await collect(kafka, SIGNALS_TECHNICAL.name, start=signal_start,
                            until=lambda got: sum(map(len, ours(got).values())) >= len(candles))
    assert ours(signals) == want_signals
    assert sum(map(len, want_alerts.values())) > 3
    alerts = await collect(kafka, ALERTS.name, start=alert_start,
                           until=lambda got: ours(got) == want_alerts)
    assert ours(alerts) == want_alerts

    bodies = [orjson.loads(value) for values in want_signals.values() for value in values]
    decisions = [body["payload"]["decision"] for body in bodies]
    assert {d["model_version"] for d in decisions} == {None, model.version}  # warm-up, then the model
    assert {"buy", "sell"} <= {d["action"] for d in decisions}
