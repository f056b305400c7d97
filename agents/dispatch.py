"""One Kafka record in, the records to publish out: decoding, the agent's `handle`, the error policy.

This is the part of the runtime that decides what an error means, kept free of any Kafka client
so it can be tested alone:

- bytes are not JSON or fail the schema: a `DeadLettered` record (reason + original bytes); go on.
- `handle` raised `RetriableError`: retry with jittered exponential backoff, `max_retries` times;
  then `RetriesExhaustedError` (the process stops, the offset stays uncommitted, nothing is lost).
- `handle` raised `DomainError`: `DeadLettered` + `AgentFailed` on `alerts`; go on.
- `handle` returned an event its agent does not declare in `produces`, or anything else raised:
  propagate, because a broken invariant must stop the process.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from config import CryptiqError, DomainError, RetriableError
from config.settings import AgentsConfig
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import REGISTRY, TopicRegistry
from topics.serialization import DecodeError, decode, encode, headers
from topics.system import AgentFailed, DeadLettered

if TYPE_CHECKING:
    from agents.base import Agent


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A consumed Kafka record, as the dispatcher needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """A record to publish: its Kafka timestamp is the event time of its envelope."""

    topic: str
    key: bytes
    value: bytes
    timestamp: int
    headers: list[tuple[str, bytes]]


class ContractViolationError(CryptiqError):
    """An agent broke its own declaration (e.g. returned an event for a topic it does not produce)."""


class RetriesExhaustedError(CryptiqError):
    """A retriable error persisted through every retry; the agent stops without committing."""


@dataclass
class DispatchStats:
    """Counters a heartbeat reports."""

    processed: int = 0
    dead_lettered: int = 0
    retries: int = 0
    last_error: str | None = None
    produced: Counter[str] = field(default_factory=Counter)  # records published, by topic


@dataclass
class Dispatcher:
    """Applies one agent's `handle` to raw records under the error policy above."""

    agent: Agent
    config: AgentsConfig
    registry: TopicRegistry = REGISTRY
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    stats: DispatchStats = field(default_factory=DispatchStats)

    def __post_init__(self) -> None:
        self._consumes = {spec.name: spec for spec in self.agent.consumes}
        self._produces = {spec.name for spec in self.agent.produces}

    async def dispatch(self, record: InboundRecord) -> list[OutboundRecord]:
        """Everything to publish because of `record` (possibly a dead letter), in order."""
        self.stats.processed += 1
        spec = self._consumes.get(record.topic)
        if spec is None:
            raise ContractViolationError(
                f"agent {self.agent.name} received topic {record.topic} it does not consume"
            )
        try:
            env = decode(spec, record.value)
        except DecodeError as exc:
            return [self._dead_letter(record, exc.kind, exc.reason)]
        try:
            outputs = await self._handle_with_retries(env)
        except DomainError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            failed = AgentFailed(
                agent=self.agent.name, error=reason, topic=record.topic, partition=record.partition,
                offset=record.offset, input_event_id=env.event_id,
            )
            failure = Envelope.create(
                failed, key=self.agent.name, ts=env.ts, source=self.agent.name, caused_by=env,
            )
            return [self._dead_letter(record, "domain_error", reason), self._outbound(failure)]
        return [self._outbound(out, check=True) for out in outputs]

    async def _handle_with_retries(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        attempt = 0
        while True:
            try:
                return await self.agent.handle(env)
            except RetriableError as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if attempt >= self.config.max_retries:
                    raise RetriesExhaustedError(
                        f"agent {self.agent.name} gave up on event {env.event_id} after "
                        f"{attempt + 1} attempts: {exc}"
                    ) from exc
                self.stats.retries += 1
                backoff = self.config.retry_backoff_s * (2**attempt)
                await self.sleep(backoff * (0.5 + self.rng.random()))  # jitter: 0.5x..1.5x
                attempt += 1

    def _outbound(self, env: Envelope[Event], *, check: bool = False) -> OutboundRecord:
        topic = self.registry.topic_of(type(env.payload)).name
        if check and topic not in self._produces:
            raise ContractViolationError(
                f"agent {self.agent.name} returned {env.type} for topic {topic}, which it does not "
                f"declare in produces={sorted(self._produces)}"
            )
        self.stats.produced[topic] += 1
        return OutboundRecord(topic, env.key.encode(), encode(env), env.ts, headers(env))

    def _dead_letter(self, record: InboundRecord, kind: str, reason: str) -> OutboundRecord:
        self.stats.dead_lettered += 1
        self.stats.last_error = reason
        letter = DeadLettered(
            agent=self.agent.name, reason=reason, error_type=kind, topic=record.topic,
            partition=record.partition, offset=record.offset,
            key=base64.b64encode(record.key).decode() if record.key is not None else None,
            value=base64.b64encode(record.value or b"").decode(),
            headers=[(name, base64.b64encode(value).decode()) for name, value in record.headers],
            timestamp=max(record.timestamp, 0),
        )
        env = Envelope.create(
            letter, key=f"{record.topic}:{record.partition}", ts=letter.timestamp, source=self.agent.name,
            discriminator=f"{record.offset}",
        )
        return self._outbound(env)
