"""Deterministic identity and causal links of envelopes; the wire format and its failures."""

from __future__ import annotations

import base64

import orjson
import pytest
from pydantic import ValidationError

from tests.factories import candle, candle_envelope
from topics.envelope import Envelope, make_event_id
from topics.registry import ALERTS, MARKET_CANDLES
from topics.serialization import DecodeError, decode, encode, headers
from topics.system import EchoObserved


def test_event_id_is_deterministic_and_depends_on_every_input() -> None:
    base = make_event_id("src", "CandleClosed", "k", 1)
    assert base == make_event_id("src", "CandleClosed", "k", 1)
    variants = {
        make_event_id("other", "CandleClosed", "k", 1),
        make_event_id("src", "Other", "k", 1),
        make_event_id("src", "CandleClosed", "k2", 1),
        make_event_id("src", "CandleClosed", "k", 2),
        make_event_id("src", "CandleClosed", "k", 1, "d"),
    }
    assert base not in variants
    assert len(variants) == 5


def test_same_candle_twice_gives_identical_bytes() -> None:
    assert encode(candle_envelope(close=101.5)) == encode(candle_envelope(close=101.5))


def test_caused_by_links_correlation_and_causation() -> None:
    root = candle_envelope()
    child = Envelope.create(
        EchoObserved(of_event_id=root.event_id, of_type=root.type, of_ts=root.ts),
        key=root.key, ts=root.ts, source="echo", caused_by=root,
    )
    grandchild = Envelope.create(
        EchoObserved(of_event_id=child.event_id, of_type=child.type, of_ts=child.ts),
        key=child.key, ts=child.ts, source="echo2", caused_by=child,
    )
    assert root.correlation_id == root.event_id
    assert root.causation_id is None
    assert child.causation_id == root.event_id
    assert grandchild.causation_id == child.event_id
    assert grandchild.correlation_id == root.event_id


def test_round_trip_through_bytes() -> None:
    env = candle_envelope()
    decoded = decode(MARKET_CANDLES, encode(env))
    assert decoded == env
    assert decoded.payload == env.payload
    assert dict(headers(env))["type"] == b"CandleClosed"


@pytest.mark.parametrize(
    ("value", "kind", "reason"),
    [
        (b"{not json", "undecodable", "not valid JSON"),
        (None, "undecodable", "tombstone"),
        (b"[1, 2]", "invalid", "JSON object"),
        (b'{"type": "CandleClosed"}', "invalid", "integer 'version'"),
        (b'{"type": "Nope", "version": 1}', "unknown_type", "'Nope' version 1"),
        (b'{"type": "CandleClosed", "version": 9}', "unknown_type", "version 9"),
    ],
)
def test_undecodable_messages_say_why(value: bytes | None, kind: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(MARKET_CANDLES, value)
    assert info.value.kind == kind
    assert reason in info.value.reason


def test_schema_invalid_payload_names_the_field() -> None:
    data = orjson.loads(encode(candle_envelope()))
    data["payload"]["volume"] = "a lot"
    with pytest.raises(DecodeError) as info:
        decode(MARKET_CANDLES, orjson.dumps(data))
    assert info.value.kind == "invalid"
    assert "volume" in info.value.reason


def test_an_event_on_the_wrong_topic_is_invalid() -> None:
    with pytest.raises(DecodeError, match="does not belong on topic alerts"):
        decode(ALERTS, encode(candle_envelope()))


@pytest.mark.parametrize(
    "changes",
    [
        {"high": 90.0},  # high below open/close
        {"low": 200.0},  # low above open/close
        {"open": -1.0},
        {"close": float("nan")},
        {"volume": -5.0},
        {"timeframe": "hourly"},
    ],
)
def test_candles_that_break_ohlc_rules_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        candle(**changes)


def test_envelopes_are_immutable() -> None:
    env = candle_envelope()
    with pytest.raises(ValidationError):
        env.ts = 5  # type: ignore[misc]


def test_dead_letter_value_is_base64_of_the_original_bytes() -> None:
    # The runtime keeps original bytes as base64 so they survive JSON; check the round trip here.
    original = b"\x00\xffnot json"
    assert base64.b64decode(base64.b64encode(original).decode()) == original
