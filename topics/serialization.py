"""Envelope <-> bytes. JSON (UTF-8), decoded with orjson and validated once, here, at the edge.

Encoding uses pydantic's own JSON serializer (Rust, as fast as orjson) because it already knows
how to write every field type our models use (Decimal as a string, for money).
A message that cannot be used raises `DecodeError` with a kind and a one-line reason that the
agent runtime sends to the dead-letter topic.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import ValidationError

from config import CryptiqError
from topics.envelope import Envelope
from topics.events import Event, UnknownEventError, event_class
from topics.registry import TopicSpec

CONTENT_TYPE = b"application/json"

DecodeErrorKind = Literal["undecodable", "invalid", "unknown_type"]


class DecodeError(CryptiqError):
    """A message's bytes are not a valid envelope for its topic."""

    def __init__(self, kind: DecodeErrorKind, reason: str) -> None:
        super().__init__(reason)
        self.kind: DecodeErrorKind = kind
        self.reason = reason


def encode(envelope: Envelope[Any]) -> bytes:
    """The wire bytes of `envelope`."""
    return envelope.__pydantic_serializer__.to_json(envelope)


def headers(envelope: Envelope[Any]) -> list[tuple[str, bytes]]:
    """Kafka headers that let a consumer route a message without parsing its value."""
    return [
        ("type", envelope.type.encode()),
        ("version", str(envelope.version).encode()),
        ("event_id", envelope.event_id.encode()),
        ("content-type", CONTENT_TYPE),
    ]


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def decode(topic: TopicSpec, value: bytes | None) -> Envelope[Event]:
    """Parse and validate one message of `topic`; DecodeError says why it cannot be used."""
    if value is None:
        raise DecodeError("undecodable", "message has no value (tombstone)")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("undecodable", f"value is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError("invalid", f"value must be a JSON object (an envelope), got {type(data).__name__}")
    type_, version = data.get("type"), data.get("version")
    if not isinstance(type_, str) or not isinstance(version, int):
        raise DecodeError("invalid", "envelope needs a string 'type' and an integer 'version'")
    try:
        cls = event_class(type_, version)
    except UnknownEventError as exc:
        raise DecodeError("unknown_type", str(exc)) from None
    if cls not in topic.events:
        allowed = ", ".join(event.TYPE for event in topic.events)
        raise DecodeError(
            "invalid", f"event type {type_!r} does not belong on topic {topic.name} (allowed: {allowed})"
        )
    try:
        payload = cls.model_validate(data.get("payload"))
        return Envelope[Event].model_validate({**data, "payload": payload})
    except ValidationError as exc:
        raise DecodeError("invalid", f"{type_} v{version} failed validation: {_summarise(exc)}") from None
