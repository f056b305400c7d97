"""JSON Schema of each topic's messages, for consumers written in other languages.

A topic's schema is a `oneOf` over its event types, discriminated by `type`: each branch is
the envelope with `type` and `version` fixed and `payload` the event's own schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from topics.envelope import Envelope
from topics.events import Event
from topics.registry import TopicSpec


class _EnvelopeFields(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _branch(event: type[Event]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in Envelope.model_fields.items() if name != "payload"
    }
    fields["type"] = (Literal[event.TYPE], Field(description="event type tag"))  # type: ignore[valid-type]
    fields["version"] = (Literal[event.VERSION], Field(description="schema version of the payload"))  # type: ignore[valid-type]
    fields["payload"] = (event, ...)
    return create_model(f"{event.__name__}Envelope", __base__=_EnvelopeFields, **fields)


def topic_schema(topic: TopicSpec) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every message value on `topic` satisfies."""
    branches = tuple(_branch(event) for event in topic.events)
    union = branches[0] if len(branches) == 1 else Annotated[Union[branches], Field(discriminator="type")]  # noqa: UP007
    schema = TypeAdapter(union).json_schema(mode="serialization")
    schema["title"] = topic.name
    schema["description"] = f"{topic.description}. Key: {topic.key}. Value: UTF-8 JSON."
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
