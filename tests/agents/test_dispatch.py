"""The runtime's error policy, without a broker: dead letters, retries, domain errors, contracts."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import ClassVar

import orjson
import pytest

from agents.dispatch import (
    ContractViolationError,
    Dispatcher,
    InboundRecord,
    RetriesExhaustedError,
)
from config import DomainError, RetriableError
from config.settings import AgentsConfig
from tests.factories import candle_envelope
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import ALERTS, DIAGNOSTICS_ECHO, MARKET_CANDLES, TopicSpec
from topics.serialization import decode, encode
from topics.system import AlertRaised, EchoObserved


class ScriptedAgent:
    """Echoes candles, but first raises the errors it was given, one per call."""

    name: ClassVar[str] = "scripted"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (MARKET_CANDLES,)
    produces: ClassVar[tuple[TopicSpec, ...]] = (DIAGNOSTICS_ECHO,)

    def __init__(self, errors: Sequence[Exception] = (), emit_alert: bool = False) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.emit_alert = emit_alert

    async def start(self) -> None:
        pass

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        if self.emit_alert:
            return [Envelope.create(AlertRaised(name="x", severity="info", message="m"), key="x", ts=env.ts,
                                    source=self.name)]
        return [Envelope.create(EchoObserved(of_event_id=env.event_id, of_type=env.type, of_ts=env.ts),
                                key=env.key, ts=env.ts, source=self.name, caused_by=env)]


def record(value: bytes | None, offset: int = 7, topic: str = MARKET_CANDLES.name) -> InboundRecord:
    return InboundRecord(topic=topic, partition=1, offset=offset, key=b"k", value=value, timestamp=1234,
                         headers=(("h", b"\x01"),))


def make(agent: ScriptedAgent, retries: int = 3) -> tuple[Dispatcher, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    config = AgentsConfig(max_retries=retries, retry_backoff_s=0.1)
    return Dispatcher(agent, config, sleep=fake_sleep), sleeps


async def test_good_message_is_handled_and_published_on_the_declared_topic() -> None:
    dispatcher, _ = make(ScriptedAgent())
    env = candle_envelope()
    [out] = await dispatcher.dispatch(record(encode(env)))
    assert out.topic == DIAGNOSTICS_ECHO.name
    assert out.key == env.key.encode()
    assert out.timestamp == env.ts
    echoed = decode(DIAGNOSTICS_ECHO, out.value)
    assert echoed.payload.of_event_id == env.event_id  # type: ignore[attr-defined]
    assert echoed.causation_id == env.event_id


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"{oops", "undecodable"), (b'{"type": "CandleClosed", "version": 1, "payload": {}}', "invalid"),
     (b'{"type": "Mystery", "version": 1}', "unknown_type")],
)
async def test_bad_bytes_go_to_deadletter_whole_with_the_reason(value: bytes, kind: str) -> None:
    agent = ScriptedAgent()
    dispatcher, _ = make(agent)
    [letter] = await dispatcher.dispatch(record(value, offset=42))
    assert letter.topic == "deadletter"
    body = orjson.loads(letter.value)["payload"]
    assert body["error_type"] == kind
    assert body["reason"]
    assert (body["topic"], body["partition"], body["offset"]) == (MARKET_CANDLES.name, 1, 42)
    assert base64.b64decode(body["value"]) == value
    assert base64.b64decode(body["key"]) == b"k"
    assert body["headers"] == [["h", base64.b64encode(b"\x01").decode()]]
    assert agent.calls == 0
    assert dispatcher.stats.dead_lettered == 1


async def test_dead_letters_of_different_offsets_have_different_ids() -> None:
    dispatcher, _ = make(ScriptedAgent())
    [a] = await dispatcher.dispatch(record(b"x", offset=1))
    [b] = await dispatcher.dispatch(record(b"x", offset=2))
    assert orjson.loads(a.value)["event_id"] != orjson.loads(b.value)["event_id"]


async def test_retriable_errors_are_retried_with_growing_jittered_backoff() -> None:
    agent = ScriptedAgent(errors=[RetriableError("busy"), RetriableError("busy")])
    dispatcher, sleeps = make(agent)
    [out] = await dispatcher.dispatch(record(encode(candle_envelope())))
    assert out.topic == DIAGNOSTICS_ECHO.name
    assert agent.calls == 3
    assert len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.15
    assert 0.1 <= sleeps[1] <= 0.3


async def test_retries_are_bounded_then_the_agent_stops() -> None:
    agent = ScriptedAgent(errors=[RetriableError("down")] * 10)
    dispatcher, sleeps = make(agent, retries=2)
    with pytest.raises(RetriesExhaustedError, match="after 3 attempts"):
        await dispatcher.dispatch(record(encode(candle_envelope())))
    assert agent.calls == 3
    assert len(sleeps) == 2


async def test_domain_error_dead_letters_the_input_and_reports_agent_failed() -> None:
    env = candle_envelope()
    dispatcher, _ = make(ScriptedAgent(errors=[DomainError("symbol is delisted")]))
    letter, failure = await dispatcher.dispatch(record(encode(env), offset=9))
    assert letter.topic == "deadletter"
    assert orjson.loads(letter.value)["payload"]["error_type"] == "domain_error"
    assert failure.topic == ALERTS.name
    failed = decode(ALERTS, failure.value)
    assert failed.payload.error == "DomainError: symbol is delisted"  # type: ignore[attr-defined]
    assert failed.payload.offset == 9  # type: ignore[attr-defined]
    assert failed.causation_id == env.event_id
    # and the next message flows
    [out] = await dispatcher.dispatch(record(encode(candle_envelope(close=104.0))))
    assert out.topic == DIAGNOSTICS_ECHO.name


async def test_a_bug_in_the_agent_propagates() -> None:
    dispatcher, _ = make(ScriptedAgent(errors=[ZeroDivisionError("bug")]))
    with pytest.raises(ZeroDivisionError):
        await dispatcher.dispatch(record(encode(candle_envelope())))


async def test_publishing_an_undeclared_topic_is_a_contract_violation() -> None:
    dispatcher, _ = make(ScriptedAgent(emit_alert=True))
    with pytest.raises(ContractViolationError, match="does not declare"):
        await dispatcher.dispatch(record(encode(candle_envelope())))


async def test_a_topic_the_agent_does_not_consume_is_a_contract_violation() -> None:
    dispatcher, _ = make(ScriptedAgent())
    with pytest.raises(ContractViolationError, match="does not consume"):
        await dispatcher.dispatch(record(b"{}", topic="alerts"))
