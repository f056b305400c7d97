"""Operational events: heartbeats, dead letters, agent failures, alerts and the echo probe."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from topics.events import Event, register_event

Scalar = str | int | float | bool | None


@register_event
class AgentHeartbeat(Event):
    """An agent instance says it is alive, how far behind it is and what went wrong last."""

    TYPE: ClassVar[str] = "AgentHeartbeat"
    VERSION: ClassVar[int] = 1

    agent: str
    instance: str = Field(description="host:pid of the process hosting the agent")
    status: Literal["starting", "ready", "paused", "draining", "stopped"]
    processed: int = Field(ge=0, description="messages handled since start")
    dead_lettered: int = Field(ge=0, description="messages sent to the dead-letter topic since start")
    lag: int = Field(ge=0, description="messages behind the end of its input topics, summed")
    last_error: str | None = None


@register_event
class DeadLettered(Event):
    """A message an agent could not use, kept whole with the reason so nothing is lost.

    `value` and `key` are the original bytes, base64-encoded; `reason` is one readable line.
    """

    TYPE: ClassVar[str] = "DeadLettered"
    VERSION: ClassVar[int] = 1

    agent: str
    reason: str
    error_type: str = Field(description="undecodable | invalid | unknown_type | domain_error")
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = Field(None, description="original key bytes, base64")
    value: str = Field(description="original value bytes, base64")
    headers: list[tuple[str, str]] = Field(default_factory=list, description="(name, base64 value)")
    timestamp: int = Field(ge=0, description="the original message's Kafka timestamp, UTC ms")


@register_event
class AgentFailed(Event):
    """An agent hit a domain error on one message; the message went to the dead-letter topic."""

    TYPE: ClassVar[str] = "AgentFailed"
    VERSION: ClassVar[int] = 1

    agent: str
    error: str
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    input_event_id: str | None = None


@register_event
class AlertRaised(Event):
    """Something a person may want to know, with a severity and structured details."""

    TYPE: ClassVar[str] = "AlertRaised"
    VERSION: ClassVar[int] = 1

    name: str = Field(min_length=1, description="stable name of the rule or condition")
    severity: Literal["info", "warning", "critical"]
    message: str
    symbol: str | None = None
    details: dict[str, Scalar] = Field(default_factory=dict)


@register_event
class EchoObserved(Event):
    """The echo agent saw an event: a probe that the pipeline carries messages end to end."""

    TYPE: ClassVar[str] = "EchoObserved"
    VERSION: ClassVar[int] = 1

    of_event_id: str
    of_type: str
    of_ts: int = Field(ge=0)
