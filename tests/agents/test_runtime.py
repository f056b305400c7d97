"""The agent runtime on the real embedded broker, Redis and Postgres, in this process.

Plain aiokafka produces the inputs and reads the outputs, as a client in another language would.
Each test tells its own messages apart by their event ids, so tests can share the topics.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import orjson
import pytest

from agents.base import AgentDeps
from agents.echo import EchoAgent
from agents.runtime import AgentHost
from busio import collect, end_offsets, produce
from config import Settings
from factories import candle_series
from infra import Endpoints
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import AGENTS_HEARTBEAT, DEADLETTER, DIAGNOSTICS_ECHO, MARKET_CANDLES, TopicSpec

READY_BUDGET_S = 5.0


@pytest.fixture
async def echo_host(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any]
) -> AsyncIterator[AgentHost]:
    fast_beats = settings.model_copy(
        update={"agents": settings.agents.model_copy(update={"heartbeat_interval_s": 0.5})}
    )
    host = AgentHost(EchoAgent, fast_beats, endpoints)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


def payloads(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(record.value)["payload"] for record in records]


async def test_a_candle_from_a_plain_producer_reaches_a_plain_consumer_through_echo(
    echo_host: AgentHost, kafka: dict[str, Any],
) -> None:
    ready_after = await echo_host.wait_ready(timeout=30)
    assert ready_after < READY_BUDGET_S, f"echo took {ready_after:.2f}s to be ready"

    start = await end_offsets(kafka, DIAGNOSTICS_ECHO.name)
    candles = candle_series(20, start=1_000 * 3_600_000, symbol="ROUND/TRIP")
    await produce(kafka, MARKET_CANDLES.name, candles)

    wanted = {env.event_id for env in candles}
    records = await collect(
        kafka, DIAGNOSTICS_ECHO.name, start=start,
        until=lambda got: wanted <= {p["of_event_id"] for p in payloads(got)},
    )
    seen = [p for p in payloads(records) if p["of_event_id"] in wanted]
    assert sorted(p["of_event_id"] for p in seen) == sorted(wanted)
    # Key and event time travel with the event; per-key order is kept.
    by_id = {env.event_id: env for env in candles}
    for record in records:
        body = orjson.loads(record.value)
        if body["payload"]["of_event_id"] in wanted:
            source = by_id[body["payload"]["of_event_id"]]
            assert record.key == source.key.encode()
            assert record.timestamp == source.ts == body["ts"]
            assert body["causation_id"] == source.event_id
    assert [p["of_ts"] for p in seen] == sorted(p["of_ts"] for p in seen)


async def test_bad_messages_go_to_deadletter_with_reason_and_bytes_and_the_next_good_one_flows(
    echo_host: AgentHost, kafka: dict[str, Any],
) -> None:
    await echo_host.wait_ready(timeout=30)
    dead_start = await end_offsets(kafka, DEADLETTER.name)
    echo_start = await end_offsets(kafka, DIAGNOSTICS_ECHO.name)

    good = candle_series(1, start=2_000 * 3_600_000, symbol="DEAD/LETTER")[0]
    not_json = b"{this is not json"
    invalid = orjson.dumps(orjson.loads(good.model_dump_json()) | {"payload": {"symbol": "DEAD/LETTER"}})
    await produce(kafka, MARKET_CANDLES.name, [(b"bad:1", not_json), (b"bad:2", invalid)])
    await produce(kafka, MARKET_CANDLES.name, [good])

    echoes = await collect(
        kafka, DIAGNOSTICS_ECHO.name, start=echo_start,
        until=lambda got: any(p["of_event_id"] == good.event_id for p in payloads(got)),
    )
    assert any(p["of_event_id"] == good.event_id for p in payloads(echoes))

    originals = {not_json, invalid}
    letters = await collect(
        kafka, DEADLETTER.name, start=dead_start,
        until=lambda got: originals <= {base64.b64decode(p["value"]) for p in payloads(got)},
    )
    by_value = {base64.b64decode(p["value"]): p for p in payloads(letters)}
    assert originals <= set(by_value)
    assert by_value[not_json]["error_type"] == "undecodable"
    assert by_value[invalid]["error_type"] == "invalid"
    assert "open_time" in by_value[invalid]["reason"]  # names a missing field
    for letter in (by_value[not_json], by_value[invalid]):
        assert letter["agent"] == "echo"
        assert letter["topic"] == MARKET_CANDLES.name
        assert letter["offset"] >= 0
        assert letter["partition"] >= 0
    assert base64.b64decode(by_value[not_json]["key"]) == b"bad:1"


async def test_heartbeats_report_the_agent_its_counts_and_lag(
    echo_host: AgentHost, kafka: dict[str, Any],
) -> None:
    await echo_host.wait_ready(timeout=30)
    start = await end_offsets(kafka, AGENTS_HEARTBEAT.name)
    await produce(kafka, MARKET_CANDLES.name, candle_series(5, start=3_000 * 3_600_000, symbol="HEART/BEAT"))

    def mine(got: list[Any]) -> list[dict[str, Any]]:
        return [p for p in payloads(got) if p["instance"] == echo_host.instance]

    beats = await collect(
        kafka, AGENTS_HEARTBEAT.name, start=start,
        until=lambda got: any(p["processed"] >= 5 and p["lag"] == 0 for p in mine(got)),
    )
    last = mine(beats)[-1]
    assert last["agent"] == "echo"
    assert last["status"] == "ready"
    assert last["processed"] >= 5
    assert last["lag"] == 0


class Exploding:
    """Echoes candles, but a BOOM/USDT candle breaks it while `armed` (a bug, not bad input)."""

    name: ClassVar[str] = "exploding-test"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (MARKET_CANDLES,)
    produces: ClassVar[tuple[TopicSpec, ...]] = (DIAGNOSTICS_ECHO,)
    armed: ClassVar[bool] = True

    def __init__(self, deps: AgentDeps) -> None:
        self.echo = EchoAgent(deps)

    async def start(self) -> None:
        """Nothing to restore."""

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        if self.armed and getattr(env.payload, "symbol", None) == "BOOM/USDT":
            raise RuntimeError("bug: cannot handle BOOM")
        return [
            Envelope.create(out.payload, key=out.key, ts=out.ts, source=self.name, caused_by=env)
            for out in await self.echo.handle(env)
        ]


async def test_a_crash_stops_the_agent_and_its_batch_is_read_again_after_restart(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any],
) -> None:
    boom = candle_series(1, start=4_000 * 3_600_000, symbol="BOOM/USDT")[0]
    start = await end_offsets(kafka, DIAGNOSTICS_ECHO.name)
    await produce(kafka, MARKET_CANDLES.name, [boom])

    first = AgentHost(Exploding, settings, endpoints)
    await first.start()
    try:
        await asyncio.wait_for(first.crashed.wait(), 30)
    finally:
        await first.stop()
    assert isinstance(first.error, RuntimeError)
    assert first.heartbeat("stopped").last_error == "RuntimeError: bug: cannot handle BOOM"

    Exploding.armed = False  # the fix is deployed
    try:
        second = AgentHost(Exploding, settings, endpoints)
        await second.start()
        try:
            echoes = await collect(
                kafka, DIAGNOSTICS_ECHO.name, start=start,
                until=lambda got: any(p["of_event_id"] == boom.event_id for p in payloads(got)),
            )
        finally:
            await second.stop()
    finally:
        Exploding.armed = True
    assert second.error is None
    assert [p["of_event_id"] for p in payloads(echoes)].count(boom.event_id) == 1
