"""The Kafka shell around an agent core: consume a batch, `Dispatcher`, publish, commit.

One `AgentHost` runs one agent with its own consumer group (the agent's name), whether the
agent runs alone (`cryptiq agent NAME`) or beside others (`cryptiq run`).

How a batch flows: `getmany` hands over up to `agents.batch_size` records; each goes through the
dispatcher; every output is handed to the producer without waiting; the batch's sends are
awaited together; only then do the batch's offsets count as processed, and processed offsets are
committed every `agents.commit_interval_s`, on rebalance and on stop. So an output is always on
the broker before its input's offset is committed (at-least-once). A graceful stop (SIGTERM)
finishes the batch in hand, commits and leaves the group, so a restart neither skips nor repeats
anything; after a crash (kill -9) the uncommitted tail is processed again, and consumers dedupe
on the deterministic `event_id`.

Why aiokafka and not a faust-streaming agent: measured on the 2-core reference machine, a
faust agent iterating `stream.take_events` forwards at most ~11k events/s *doing nothing*
(faust hands every message through a queue, two `wait_first` calls and four asyncio tasks),
and ~7k/s with our decode/validate/encode, below the 10k/s this runtime must sustain; the same
loop on aiokafka's `getmany` reaches the broker's ceiling. `benchmarks/bus.py` measures both.

Why the group timings below: Tansu answers a JoinGroup only after waiting for other members
for about half the rebalance timeout, so Kafka's usual 45-60 s sessions made a new member wait
~30 s. A 4 s session with 1 s heartbeats brings "ready" to ~2-3 s; a member that dies is
noticed within 4 s, which suits agents that restart in seconds. The handler runs in the same
task as `getmany`, so a slow batch only has to finish within `max_poll_interval` (5 min).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from agents.base import Agent, AgentDeps
from agents.dispatch import Dispatcher, InboundRecord
from config import Settings
from infra import Endpoints, install_leave_group_fix, kafka_client_kwargs
from memory.migrations import upgrade
from memory.ports import StateStore
from memory.redis_store import RedisStateStore, connect_redis
from topics.control import AgentPauseChanged
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import AGENTS_HEARTBEAT, CONTROL_COMMANDS, DEADLETTER, REGISTRY, TopicSpec
from topics.serialization import DecodeError, decode, encode, headers
from topics.system import AgentHeartbeat

# See the module docstring: Tansu holds a JoinGroup for ~rebalance timeout / 2.
GROUP_SESSION_TIMEOUT_MS = 4000
GROUP_HEARTBEAT_INTERVAL_MS = 1000
MAX_POLL_INTERVAL_MS = 300_000
PRODUCER_MAX_BATCH_BYTES = 256 * 1024

Status = Literal["starting", "ready", "paused", "draining", "stopped"]
PAUSED_KEY = "_paused"  # in the agent's state store: the last AgentPauseChanged applied, as JSON


def instance_name() -> str:
    """host:pid, the `instance` of this process in heartbeats."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class HostState:
    """Where a host is in its life, for heartbeats and `wait_ready`."""

    status: Status = "starting"
    started_at: float = 0.0
    ready_after_s: float | None = None



async def close_agent(agent: object, log: Any) -> None:
    """Call the agent's optional `close()` (database engines and the like), once, when its host stops."""
    close = getattr(agent, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception as exc:  # closing must not hide why we stopped
        log.warning("agent close failed", error=f"{type(exc).__name__}: {exc}")


class _Host:
    """What every host shares: identity, readiness, crash state, the producer and heartbeats."""

    def __init__(self, name: str, settings: Settings, endpoints: Endpoints, instance: str | None) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.name = name
        self.instance = instance or instance_name()
        self.log = structlog.get_logger("cryptiq.agent").bind(agent=self.name, instance=self.instance)
        self.ready = asyncio.Event()
        self.crashed = asyncio.Event()
        self.error: BaseException | None = None
        self.state = HostState()
        self._producer: AIOKafkaProducer | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._heartbeats = 0
        self._redis: Any = None

    def heartbeat(self, status: Status) -> AgentHeartbeat:
        """This host's heartbeat payload now."""
        raise NotImplementedError

    def _open_store(self) -> StateStore:
        self._redis = connect_redis(self.endpoints.redis_url)
        return RedisStateStore(self._redis, self.settings.redis.namespace, self.name)

    def _new_producer(self) -> AIOKafkaProducer:
        client = kafka_client_kwargs(self.settings.kafka, self.endpoints.kafka_bootstrap)
        client["client_id"] = f"{client['client_id']}-{self.name}"
        return AIOKafkaProducer(
            **client, acks="all", linger_ms=self.settings.agents.producer_linger_ms,
            max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        )

    async def wait_ready(self, timeout: float) -> float:
        """Seconds from `start` to ready. TimeoutError if not ready in time; the error if it crashed."""
        waits = [asyncio.ensure_future(self.ready.wait()), asyncio.ensure_future(self.crashed.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if self.error is not None:
            raise self.error
        if self.state.ready_after_s is None:
            raise TimeoutError(f"agent {self.name} was not assigned partitions within {timeout:.0f} s")
        return self.state.ready_after_s

    async def _beat_forever(self) -> None:
        interval = self.settings.agents.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self._publish_heartbeat(self.state.status)
            except Exception as exc:  # a missed heartbeat is not worth dying for
                self.log.warning("heartbeat not sent", error=str(exc))

    async def _publish_heartbeat(self, status: Status) -> None:
        if self._producer is None:
            return
        # Heartbeats are about the process, not the market: wall-clock time is their event time.
        self._heartbeats += 1
        now_ms = time.time_ns() // 1_000_000
        env = Envelope.create(
            self.heartbeat(status), key=f"{self.name}:{self.instance}", ts=now_ms, source=self.name,
            discriminator=f"{self.instance}:{self._heartbeats}",
        )
        await self._producer.send_and_wait(
            AGENTS_HEARTBEAT.name, encode(env), key=env.key.encode(), timestamp_ms=now_ms,
            headers=headers(env),
        )



class AgentHost(_Host):
    """Runs one agent: restores its state, consumes, publishes, commits, sends heartbeats.

    `await host.start()` returns once the consumer is subscribed; `host.ready` is set when the
    group has assigned partitions; `host.crashed` when the agent hit an error that must stop the
    process (`host.error` says which; that batch is not committed). `await host.stop()` drains.
    """

    def __init__(
        self,
        agent_cls: type[Agent],
        settings: Settings,
        endpoints: Endpoints,
        *,
        store: StateStore | None = None,
        instance: str | None = None,
    ) -> None:
        super().__init__(agent_cls.name, settings, endpoints, instance)
        self.agent: Agent | None = None
        self.dispatcher: Dispatcher | None = None
        self._agent_cls = agent_cls
        self._store = store
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, after processing
        self._committed: dict[TopicPartition, int] = {}
        self._batch_lock = asyncio.Lock()  # held while a batch is in hand: rebalances wait for it
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self.idle = False  # True when the last poll found nothing new
        self.paused = False  # an operator paused this agent (AgentPauseChanged on control.commands)

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate, restore state, connect, subscribe. Readiness follows with the assignment."""
        install_leave_group_fix()
        self.state.started_at = time.monotonic()
        await upgrade(self.endpoints.postgres_url)
        self._store = self._store or self._open_store()
        self.agent = self._agent_cls(  # type: ignore[call-arg]
            AgentDeps(store=self._store, log=self.log, settings=self.settings)
        )
        self.dispatcher = Dispatcher(self.agent, self.settings.agents)
        await self.agent.start()
        saved = await self._store.load(PAUSED_KEY)
        self.paused = bool(saved and orjson.loads(saved).get("paused"))

        client = kafka_client_kwargs(self.settings.kafka, self.endpoints.kafka_bootstrap)
        client["client_id"] = f"{client['client_id']}-{self.name}"
        self._producer = self._new_producer()
        self._consumer = AIOKafkaConsumer(
            **client,
            group_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.agents.batch_size,
            fetch_max_wait_ms=self.settings.agents.fetch_max_wait_ms,  # see AgentsConfig: Tansu's rechecks
            session_timeout_ms=GROUP_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=GROUP_HEARTBEAT_INTERVAL_MS,
            rebalance_timeout_ms=GROUP_SESSION_TIMEOUT_MS,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        await self._producer.start()
        await self._consumer.start()
        topics = [spec.name for spec in self._agent_cls.consumes]
        if CONTROL_COMMANDS.name not in topics:
            topics.append(CONTROL_COMMANDS.name)  # the runtime's own input: pause and resume
        self._consumer.subscribe(topics, listener=_Rebalance(self))
        self._loop_task = asyncio.create_task(self._consume_forever(), name=f"{self.name}-consume")
        self._heartbeat_task = asyncio.create_task(self._beat_forever(), name=f"{self.name}-heartbeat")
        self.log.info("agent starting", consumes=[spec.name for spec in self._agent_cls.consumes])

    async def stop(self) -> None:
        """Finish the batch in hand, commit, leave the group, flush the producer, say goodbye."""
        self.state.status = "draining"
        self.log.info("agent draining")
        self._stopping.set()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(self._loop_task, self.settings.agents.shutdown_timeout_s)
            except TimeoutError:  # wait_for cancelled the batch: it stays uncommitted
                self.log.warning("batch not finished within agents.shutdown_timeout_s; it will be redone")
        try:
            if self._consumer is not None:
                await self._commit()
        except Exception as exc:  # the broker may be why we stop: the next run re-reads the tail
            self.log.warning("final commit failed; the uncommitted tail will be read again", error=str(exc))
        try:
            await self._publish_heartbeat("stopped")
        except Exception as exc:
            self.log.warning("last heartbeat not sent", error=str(exc))
        if self._consumer is not None:
            await self._consumer.stop()  # leaves the group: the next member is assigned at once
        if self._producer is not None:
            await self._producer.stop()  # flushes what is still lingering
        await close_agent(self.agent, self.log)
        if self._redis is not None:
            await self._redis.aclose()
        self.state.status = "stopped"
        stats = self.dispatcher.stats if self.dispatcher else None
        self.log.info(
            "agent stopped",
            processed=stats.processed if stats else 0,
            dead_lettered=stats.dead_lettered if stats else 0,
        )

    # -- the loop ------------------------------------------------------------------------------

    async def _consume_forever(self) -> None:
        assert self._consumer is not None
        agents_cfg = self.settings.agents
        timeout_ms = max(1, round(agents_cfg.batch_within_s * 1000))
        last_commit = time.monotonic()
        try:
            while not self._stopping.is_set():
                batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=agents_cfg.batch_size)
                self.idle = not batch
                if batch:
                    async with self._batch_lock:
                        await self._process_batch(batch)
                if time.monotonic() - last_commit >= agents_cfg.commit_interval_s:
                    await self._commit()
                    last_commit = time.monotonic()
        except Exception as exc:  # retries exhausted, a broken invariant, or Kafka gave up
            self._crash(exc)

    async def _process_batch(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        assert self.dispatcher is not None
        assert self._producer is not None
        bind = structlog.contextvars.bind_contextvars
        send = self._producer.send
        sends = []
        for tp, records in batch.items():
            bind(agent=self.name, topic=tp.topic, partition=tp.partition)
            if tp.topic == CONTROL_COMMANDS.name:
                await self._control(records)
                if CONTROL_COMMANDS not in self._agent_cls.consumes:
                    continue
            for record in records:
                bind(offset=record.offset)
                inbound = InboundRecord(
                    topic=record.topic, partition=record.partition, offset=record.offset,
                    key=record.key, value=record.value, timestamp=record.timestamp,
                    headers=tuple(record.headers or ()),
                )
                for out in await self.dispatcher.dispatch(inbound):
                    sends.append(await send(
                        out.topic, out.value, key=out.key, timestamp_ms=out.timestamp, headers=out.headers,
                    ))
        structlog.contextvars.unbind_contextvars("topic", "partition", "offset")
        await asyncio.gather(*sends)
        for tp, records in batch.items():
            self._positions[tp] = records[-1].offset + 1

    async def _commit(self, partitions: Sequence[TopicPartition] | None = None) -> None:
        """Commit processed positions that moved since the last commit."""
        assert self._consumer is not None
        wanted = partitions if partitions is not None else list(self._positions)
        offsets = {
            tp: OffsetAndMetadata(self._positions[tp], "")
            for tp in wanted
            if tp in self._positions and self._committed.get(tp) != self._positions[tp]
        }
        if offsets:
            checkpoint = getattr(self.agent, "checkpoint", None)
            if checkpoint is not None:
                await checkpoint()  # state first: a crash now re-reads input the state already saw
            await self._consumer.commit(offsets)
            self._committed.update({tp: meta.offset for tp, meta in offsets.items()})

    def _crash(self, exc: BaseException) -> None:
        self.error = exc
        if self.dispatcher is not None:
            self.dispatcher.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.log.error(
            "agent crashed; its uncommitted input will be read again on restart",
            error=f"{type(exc).__name__}: {exc}",
        )
        self.crashed.set()

    # -- pause and resume ----------------------------------------------------------------------

    async def _control(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        """Apply the AgentPauseChanged commands addressed to this agent, in order; ignore the rest."""
        for record in records:
            try:
                env = decode(CONTROL_COMMANDS, record.value)
            except DecodeError:
                continue  # the agents that consume control.commands dead-letter it; the runtime just skips
            command = env.payload
            if isinstance(command, AgentPauseChanged) and command.agent == self.name:
                self.log.info("agent paused" if command.paused else "agent resumed", actor=command.actor,
                              reason=command.reason)
                assert self._store is not None
                await self._store.save(PAUSED_KEY, orjson.dumps({
                    "paused": command.paused, "actor": command.actor, "reason": command.reason,
                    "at": command.at,
                }))
                self.paused = command.paused
                self._apply_pause()
                await self._publish_heartbeat(self.state.status)  # dashboards see it now, not in 5 s

    def _apply_pause(self) -> None:
        """Paused: stop fetching every input but control.commands (lag grows); else fetch them all."""
        consumer = self._consumer
        if consumer is None:
            return
        inputs = [tp for tp in consumer.assignment() if tp.topic != CONTROL_COMMANDS.name]
        if self.paused:
            consumer.pause(*inputs)
        else:
            consumer.resume(*inputs)
        if self.ready.is_set() and self.state.status in ("ready", "paused"):
            self.state.status = "paused" if self.paused else "ready"

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._apply_pause()  # a new assignment starts unpaused
        if not self.ready.is_set():
            self.state.ready_after_s = time.monotonic() - self.state.started_at
            self.state.status = "paused" if self.paused else "ready"
            self.ready.set()
            self.log.info(
                "agent ready", after_s=round(self.state.ready_after_s, 3), paused=self.paused,
                partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
            )
            await self._publish_heartbeat(self.state.status)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._batch_lock:  # let the batch in hand finish, then hand over its offsets
            if not self.crashed.is_set():
                await self._commit([tp for tp in revoked if tp in self._positions])
            for tp in revoked:
                self._positions.pop(tp, None)
                self._committed.pop(tp, None)

    # -- heartbeats ----------------------------------------------------------------------------

    def lag(self) -> int:
        """Messages between what this agent has processed and the end of its partitions."""
        consumer = self._consumer
        if consumer is None:
            return 0
        total = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = self._positions.get(tp, self._committed.get(tp))
            if position is None:
                continue  # nothing fetched yet: unknown, not zero — but not counted either
            total += max(0, highwater - position)
        return total

    def heartbeat(self, status: Status) -> AgentHeartbeat:
        """This host's heartbeat payload now."""
        stats = self.dispatcher.stats if self.dispatcher else None
        return AgentHeartbeat(
            agent=self.name, instance=self.instance, status=status,
            processed=stats.processed if stats else 0,
            dead_lettered=stats.dead_lettered if stats else 0,
            lag=self.lag(),
            last_error=stats.last_error if stats else None,
        )

class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what was processed before partitions move, and marks readiness on assignment."""

    def __init__(self, host: AgentHost) -> None:
        self.host = host

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.host._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.host._on_assigned(assigned)


class SourceAgent(Protocol):
    """An agent that consumes no topic and publishes what it reads elsewhere (files, exchanges)."""

    name: ClassVar[str]
    produces: ClassVar[tuple[TopicSpec, ...]]

    async def start(self) -> None:
        """Restore state (e.g. how far each stream got)."""

    def envelopes(self) -> AsyncIterator[Envelope[Event]]:
        """What to publish, in event-time order; ends when the source is exhausted."""
        ...

    async def checkpoint(self) -> None:
        """Persist progress; called after everything yielded so far is on the broker."""


class SourceHost(_Host):
    """Runs a source agent: paces its envelopes by event time, publishes them, checkpoints.

    `speed` is how many times faster than real time to replay (`None`: as fast as possible);
    `from_start` forgets the saved progress first, so a file source publishes everything again;
    pacing sleeps on the monotonic clock, which is scheduling, never a decision input. `done`
    is set when the source is exhausted and everything it yielded is on the broker.
    """

    def __init__(
        self,
        make: Callable[[AgentDeps], SourceAgent],
        name: str,
        settings: Settings,
        endpoints: Endpoints,
        *,
        speed: float | None = None,
        store: StateStore | None = None,
        instance: str | None = None,
        from_start: bool = False,
    ) -> None:
        super().__init__(name, settings, endpoints, instance)
        self.speed = speed
        self.from_start = from_start
        self.agent: SourceAgent | None = None
        self.published: Counter[str] = Counter()
        self.done = asyncio.Event()
        self._make = make
        self._store = store
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        install_leave_group_fix()
        self.state.started_at = time.monotonic()
        await upgrade(self.endpoints.postgres_url)
        self._store = self._store or self._open_store()
        if self.from_start:  # forget how far the source got: publish everything again
            for key in await self._store.keys():
                await self._store.delete(key)
        self.agent = self._make(AgentDeps(store=self._store, log=self.log, settings=self.settings))
        await self.agent.start()
        self._producer = self._new_producer()
        await self._producer.start()
        self.state.status = "ready"
        self.state.ready_after_s = time.monotonic() - self.state.started_at
        self.ready.set()
        self.log.info("agent ready", after_s=round(self.state.ready_after_s, 3), speed=self.speed or "max")
        self._task = asyncio.create_task(self._publish_all(), name=f"{self.name}-publish")
        self._heartbeat_task = asyncio.create_task(self._beat_forever(), name=f"{self.name}-heartbeat")

    async def stop(self) -> None:
        """Stop reading, put what was read on the broker, checkpoint, close."""
        self.state.status = "draining"
        self._stopping.set()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self.settings.agents.shutdown_timeout_s)
            except TimeoutError:
                self.log.warning("publishing did not finish within agents.shutdown_timeout_s")
        try:
            await self._publish_heartbeat("stopped")
        except Exception as exc:
            self.log.warning("last heartbeat not sent", error=str(exc))
        if self._producer is not None:
            await self._producer.stop()
        await close_agent(self.agent, self.log)
        if self._redis is not None:
            await self._redis.aclose()
        self.state.status = "stopped"
        self.log.info("agent stopped", published=dict(self.published))

    async def _publish_all(self) -> None:
        assert self.agent is not None
        assert self._producer is not None
        batch = self.settings.agents.batch_size
        sends: list[asyncio.Future[Any]] = []
        first_ts: int | None = None
        began = time.monotonic()
        try:
            async for env in self.agent.envelopes():
                if self._stopping.is_set():
                    break
                if self.speed is not None:
                    first_ts = env.ts if first_ts is None else first_ts
                    delay = (env.ts - first_ts) / 1000 / self.speed - (time.monotonic() - began)
                    if delay > 0:
                        await self._flush(sends)
                        await asyncio.sleep(delay)
                topic = REGISTRY.topic_of(type(env.payload)).name
                sends.append(await self._producer.send(
                    topic, encode(env), key=env.key.encode(), timestamp_ms=env.ts, headers=headers(env),
                ))
                self.published[topic] += 1
                if len(sends) >= batch:
                    await self._flush(sends)
            await self._flush(sends)
            if not self._stopping.is_set():
                self.done.set()
                self.log.info("source exhausted", published=dict(self.published))
        except Exception as exc:  # a broken file or feed: stop; the checkpoint stays at the last flush
            self.error = exc
            self.log.error("agent crashed", error=f"{type(exc).__name__}: {exc}")
            self.crashed.set()

    async def _flush(self, sends: list[asyncio.Future[Any]]) -> None:
        if sends:
            await asyncio.gather(*sends)
            sends.clear()
        assert self.agent is not None
        await self.agent.checkpoint()

    def heartbeat(self, status: Status) -> AgentHeartbeat:
        return AgentHeartbeat(
            agent=self.name, instance=self.instance, status=status,
            processed=sum(self.published.values()), dead_lettered=self.published[DEADLETTER.name],
            lag=0, last_error=f"{type(self.error).__name__}: {self.error}" if self.error else None,
        )
