"""The envelope every event travels in, and its deterministic identity.

`event_id` is a UUID5 of (source, type, key, event time, discriminator): the same inputs always
give the same id, so a replayed or retried event is recognisably the same event. Causality is
carried by `correlation_id` (the id of the flow's first event) and `causation_id` (the id of
the event that directly caused this one).

Times are integer UTC milliseconds: `ts` is when the thing happened (event time); `ts_init` is
when this envelope was made, on the producer's clock (an agent's clock is event time, so for
agents `ts_init` is the `ts` of the event being handled and replays stay byte-identical).
"""

from __future__ import annotations

import uuid
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from topics.events import Event

EVENT_NAMESPACE = uuid.UUID("6d2c4c1e-3f4a-5b8e-9a51-63727970746a")  # fixed forever: ids depend on it

E = TypeVar("E", bound=Event)


def make_event_id(source: str, type_: str, key: str, ts: int, discriminator: str = "") -> str:
    """The deterministic id of an event: same inputs, same id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{source}\x1f{type_}\x1f{key}\x1f{ts}\x1f{discriminator}"))


class Envelope(BaseModel, Generic[E]):
    """An event plus its identity, key, times, producer and causal links."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    version: int = Field(ge=1)
    key: str
    ts: int = Field(ge=0, description="event time, UTC milliseconds")
    ts_init: int = Field(ge=0, description="creation time on the producer's clock, UTC milliseconds")
    source: str = Field(min_length=1, description="the producer: agent name or data source")
    correlation_id: str
    causation_id: str | None = None
    payload: SerializeAsAny[E]

    @classmethod
    def create(
        cls,
        payload: E,
        *,
        key: str,
        ts: int,
        source: str,
        ts_init: int | None = None,
        caused_by: Envelope[Event] | None = None,
        discriminator: str = "",
    ) -> Envelope[E]:
        """Wrap `payload`. `caused_by` links it into the flow of the event that caused it.

        Give a `discriminator` when one source emits several events of one type for the same key
        and time (e.g. one per signal name), so their ids differ.
        """
        event_id = make_event_id(source, payload.TYPE, key, ts, discriminator)
        return cls(
            event_id=event_id,
            type=payload.TYPE,
            version=payload.VERSION,
            key=key,
            ts=ts,
            ts_init=ts if ts_init is None else ts_init,
            source=source,
            correlation_id=caused_by.correlation_id if caused_by is not None else event_id,
            causation_id=caused_by.event_id if caused_by is not None else None,
            payload=payload,
        )
