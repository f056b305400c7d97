"""What an agent is: a class with a name, the topics it consumes and produces, and `handle`.

The class is the core: given one input envelope it returns the envelopes to publish, taking
time only from events. The runtime (`agents/runtime.py`) owns everything else: Kafka, decoding,
dead letters, retries, commits, heartbeats and shutdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import structlog

from config import Settings
from memory.ports import StateStore
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import TopicSpec


@dataclass(frozen=True)
class AgentDeps:
    """What an agent gets from its host: a namespaced state store, a bound logger, the settings."""

    store: StateStore
    log: Any = field(default_factory=structlog.get_logger)
    settings: Settings | None = None  # the host's settings; agents read their own section


class Agent(Protocol):
    """The shape every agent class has. `name` is also its consumer group and logger name."""

    name: ClassVar[str]
    consumes: ClassVar[tuple[TopicSpec, ...]]
    produces: ClassVar[tuple[TopicSpec, ...]]

    async def start(self) -> None:
        """Restore state before the first message (may do nothing)."""

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        """Handle one input; return what to publish. Raise DomainError to dead-letter the input."""
        ...

# An agent with state may also define `async def checkpoint(self) -> None`: the runtime calls it
# right before committing offsets, so saved state is never behind the committed input. State
# may be ahead of it after a crash, so such an agent ignores inputs it has already seen.
# An agent holding resources (a database engine) may define `async def close(self) -> None`: the
# host calls it once when it stops, after the last checkpoint and commit.
