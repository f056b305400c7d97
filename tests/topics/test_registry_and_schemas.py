"""The topic registry is consistent, and each topic's JSON Schema matches its committed snapshot.

A schema change without a version bump fails here. After a deliberate, versioned change run
`CRYPTIQ_UPDATE_SNAPSHOTS=1 pytest tests/topics` and commit the new snapshot files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from tests.factories import candle_envelope
from topics.events import Event
from topics.registry import MARKET_CANDLES, REGISTRY, TopicRegistry, TopicSpec
from topics.schema import topic_schema
from topics.serialization import encode

SNAPSHOTS = Path(__file__).parent / "snapshots"


def test_every_topic_name_is_domain_dot_name_and_unique() -> None:
    names = REGISTRY.names()
    assert len(names) == len(set(names))
    for name in names:
        assert name == name.lower()
        assert all(part.isidentifier() for part in name.split(".")), name


def test_every_event_type_belongs_to_exactly_one_topic() -> None:
    for spec in REGISTRY:
        for event in spec.events:
            assert REGISTRY.topic_of(event) is spec


def test_duplicate_topics_or_events_are_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        TopicRegistry((MARKET_CANDLES, MARKET_CANDLES))
    clone = TopicSpec("market.candles2", "x", "k", MARKET_CANDLES.events)
    with pytest.raises(ValueError, match="CandleClosed is carried by"):
        TopicRegistry((MARKET_CANDLES, clone))


def test_unknown_topic_error_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"known topics: agents\.heartbeat"):
        REGISTRY.get("market.candle")


def test_event_types_are_past_tense_or_imperative_with_versions() -> None:
    for spec in REGISTRY:
        for event in spec.events:
            assert issubclass(event, Event)
            assert event.__name__ == event.TYPE
            assert event.VERSION >= 1


def test_compaction_and_retention_become_topic_configs() -> None:
    spec = TopicSpec("x.state", "d", "k", (), compacted=True)
    assert spec.topic_configs() == {"cleanup.policy": "compact"}
    assert MARKET_CANDLES.topic_configs() == {"cleanup.policy": "delete", "retention.ms": str(7 * 86_400_000)}


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda spec: spec.name)
def test_schema_matches_committed_snapshot(spec: TopicSpec) -> None:
    path = SNAPSHOTS / f"{spec.name}.schema.json"
    current = json.dumps(topic_schema(spec), indent=2, sort_keys=True) + "\n"
    if os.environ.get("CRYPTIQ_UPDATE_SNAPSHOTS") == "1":
        path.write_text(current)
    assert path.exists(), f"no snapshot for {spec.name}: run with CRYPTIQ_UPDATE_SNAPSHOTS=1 and commit it"
    assert current == path.read_text(), (
        f"the schema of {spec.name} changed: bump the event VERSION for a breaking change, "
        "then refresh the snapshot with CRYPTIQ_UPDATE_SNAPSHOTS=1"
    )


def test_an_encoded_candle_satisfies_its_published_schema() -> None:
    # Check the wire bytes against the schema's required fields and const tags, without a
    # JSON-Schema library: what another-language consumer relies on.
    schema = topic_schema(MARKET_CANDLES)
    message = orjson.loads(encode(candle_envelope()))
    assert set(schema["required"]) <= set(message)
    assert schema["properties"]["type"]["const"] == message["type"]
    payload_schema = schema["$defs"]["CandleClosed"]
    assert set(payload_schema["required"]) <= set(message["payload"])
    assert set(message["payload"]) <= set(payload_schema["properties"])
