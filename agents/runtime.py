"""The faust-streaming shell around an agent core: Kafka in, `Dispatcher`, Kafka out.

One `AgentHost` runs one agent in its own faust App, so the consumer group is the agent's name
whether the agent runs alone (`cryptiq agent NAME`) or beside others (`cryptiq run`).

How a batch flows: `stream.take_events` hands over up to `agents.batch_size` records; each goes
through the dispatcher; every output is handed to the producer without waiting; the batch's
sends are awaited together; only then does faust ack the batch, and acked offsets are committed
every `agents.commit_interval_s`. So an output is always on the broker before its input's offset
is committed (at-least-once), and a graceful stop (SIGTERM) finishes the batch, commits and
leaves the group, so a restart neither skips nor repeats anything. After a crash (kill -9) the
uncommitted tail is processed again: consumers dedupe on the deterministic `event_id`.

Why the group settings below: Tansu answers a JoinGroup only after waiting for other members for
about half the session timeout, and faust's defaults (60 s session) made a worker wait ~30 s to
join. A 4 s session with 1 s heartbeats brings "ready" to ~3 s; a member that dies is noticed
within 4 s, which suits agents that restart in seconds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
import structlog
from faust.types import TP

from agents.base import Agent, AgentDeps
from agents.dispatch import Dispatcher, InboundRecord, OutboundRecord
from config import Settings
from config.errors import ConfigError
from config.settings import KafkaConfig, reveal
from infra import Endpoints, install_leave_group_fix
from infra.kafka_client import ssl_context_of
from memory.migrations import upgrade
from memory.ports import StateStore
from memory.redis_store import RedisStateStore, connect_redis
from topics.envelope import Envelope
from topics.registry import AGENTS_HEARTBEAT
from topics.serialization import encode, headers
from topics.system import AgentHeartbeat

# See the module docstring: Tansu holds a JoinGroup for ~session/2, so keep the session short.
GROUP_SESSION_TIMEOUT_S = 4.0
GROUP_HEARTBEAT_INTERVAL_S = 1.0
# Producer batching: a few ms of linger turns thousands of sends into a handful of requests.
PRODUCER_LINGER_S = 0.005
PRODUCER_MAX_BATCH_BYTES = 256 * 1024
MAX_POLL_RECORDS = 2000
STREAM_BUFFER = 8192


def instance_name() -> str:
    """host:pid, the `instance` of this process in heartbeats."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class HostStatus:
    """What a heartbeat reports about one hosted agent."""

    status: str = "starting"
    started_at: float = 0.0
    ready_after_s: float | None = None


class AgentHost:
    """Runs one agent: builds its faust App, restores its state, consumes, publishes, beats.

    Use `await host.start()` then `await host.stop()`; `host.ready` is set when the group has
    assigned partitions and the agent's `start` has run; `host.crashed` when the agent hit an
    error that must stop the process (then `host.error` says which).
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
        self.settings = settings
        self.endpoints = endpoints
        self.name = agent_cls.name
        self.instance = instance or instance_name()
        self.log = structlog.get_logger("cryptiq.agent").bind(agent=self.name, instance=self.instance)
        self._store = store
        self._redis: Any = None
        self._agent_cls = agent_cls
        self.agent: Agent | None = None
        self.dispatcher: Dispatcher | None = None
        self.ready = asyncio.Event()
        self.crashed = asyncio.Event()
        self.error: BaseException | None = None
        self.state = HostStatus()
        self._positions: dict[TP, int] = {}
        self._heartbeats = 0
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.app = self._build_app()

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate, restore state, join the group. Returns before the group assigns partitions."""
        install_leave_group_fix()
        self.state.started_at = time.monotonic()
        await upgrade(self.endpoints.postgres_url)
        if self._store is None:
            self._redis = connect_redis(self.endpoints.redis_url)
            self._store = RedisStateStore(self._redis, self.settings.redis.namespace, self.name)
        self.agent = self._agent_cls(AgentDeps(store=self._store, log=self.log))  # type: ignore[call-arg]
        self.dispatcher = Dispatcher(self.agent, self.settings.agents)
        await self.agent.start()
        await self.app.start()
        self._heartbeat_task = asyncio.create_task(self._beat_forever(), name=f"{self.name}-heartbeat")
        self.log.info("agent starting", consumes=[spec.name for spec in self._agent_cls.consumes])

    async def wait_ready(self, timeout: float) -> float:
        """Wait until ready; the seconds it took since `start`. TimeoutError if it does not come."""
        await asyncio.wait_for(self.ready.wait(), timeout)
        assert self.state.ready_after_s is not None
        return self.state.ready_after_s

    async def stop(self) -> None:
        """Drain the batch in hand, commit, leave the group, flush the producer, say goodbye."""
        self.state.status = "draining"
        self.log.info("agent draining")
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        try:
            await self._publish_heartbeat("stopped")
        except Exception as exc:  # the broker may be the reason we stop: say so, then go on
            self.log.warning("last heartbeat not sent", error=str(exc))
        await asyncio.wait_for(self.app.stop(), self.settings.agents.shutdown_timeout_s)
        if self._redis is not None:
            await self._redis.aclose()
        self.state.status = "stopped"
        stats = self.dispatcher.stats if self.dispatcher else None
        self.log.info(
            "agent stopped",
            processed=stats.processed if stats else 0,
            dead_lettered=stats.dead_lettered if stats else 0,
        )

    # -- faust ---------------------------------------------------------------------------------

    def _build_app(self) -> faust.App:
        cfg = self.settings
        datadir = cfg.home / "faust" / self.name  # faust wants one even with memory-only tables
        datadir.mkdir(parents=True, exist_ok=True)
        app = faust.App(
            self.name,
            broker=[f"kafka://{host}" for host in self.endpoints.kafka_bootstrap.split(",")],
            broker_credentials=faust_credentials(cfg.kafka),
            broker_client_id=f"{cfg.kafka.client_id}-{self.name}",
            broker_session_timeout=GROUP_SESSION_TIMEOUT_S,
            broker_heartbeat_interval=GROUP_HEARTBEAT_INTERVAL_S,
            broker_rebalance_timeout=GROUP_SESSION_TIMEOUT_S,
            broker_commit_interval=cfg.agents.commit_interval_s,
            broker_max_poll_records=MAX_POLL_RECORDS,
            consumer_auto_offset_reset="earliest",
            producer_linger=PRODUCER_LINGER_S,
            producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
            producer_acks=-1,
            stream_buffer_maxsize=STREAM_BUFFER,
            # Topics are created by `cryptiq infra up` from the registry, never by faust.
            topic_allow_declare=False,
            topic_disable_leader=True,
            key_serializer="raw",
            value_serializer="raw",
            store="memory://",
            web_enabled=False,
            autodiscover=False,
            datadir=str(datadir),
        )
        topics = app.topic(
            *(spec.name for spec in self._agent_cls.consumes), key_type=bytes, value_type=bytes,
        )
        app.agent(topics, name=f"{self.name}.process")(self._process)
        app.on_partitions_assigned.connect(self._on_assigned)
        return app

    async def _on_assigned(self, sender: Any, assigned: set[TP], **_: Any) -> None:
        if not self.ready.is_set():
            self.state.ready_after_s = time.monotonic() - self.state.started_at
            self.state.status = "ready"
            self.ready.set()
            self.log.info("agent ready", after_s=round(self.state.ready_after_s, 3),
                          partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
            await self._publish_heartbeat("ready")

    async def _process(self, stream: Any) -> None:
        agents_cfg = self.settings.agents
        async for events in stream.take_events(agents_cfg.batch_size, within=agents_cfg.batch_within_s):
            try:
                await self._process_batch(events)
            except Exception as exc:  # retries exhausted or a broken invariant: stop, commit nothing
                self._fail(events, exc)
                await asyncio.Future()  # hold the batch until `stop` cancels us; it is never acked

    async def _process_batch(self, events: Sequence[Any]) -> None:
        assert self.dispatcher is not None
        bind = structlog.contextvars.bind_contextvars
        sends = []
        for event in events:
            message = event.message
            bind(agent=self.name, topic=message.topic, partition=message.partition, offset=message.offset)
            record = InboundRecord(
                topic=message.topic, partition=message.partition, offset=message.offset,
                key=message.key, value=message.value, timestamp=round(message.timestamp * 1000),
                headers=tuple(message.headers or ()),
            )
            for out in await self.dispatcher.dispatch(record):
                sends.append(await self._send(out))
        structlog.contextvars.unbind_contextvars("topic", "partition", "offset")
        await asyncio.gather(*sends)
        for event in events:
            self._positions[event.message.tp] = event.message.offset + 1

    async def _send(self, out: OutboundRecord) -> asyncio.Future[Any]:
        # faust takes the timestamp in float seconds and truncates it back to ms; the half ms
        # keeps float rounding from turning 123 ms into 122.
        return await self.app.producer.send(
            out.topic, out.key, out.value, None, (out.timestamp + 0.5) / 1000, out.headers
        )

    def _fail(self, events: Sequence[Any], exc: BaseException) -> None:
        for event in events:
            # Marking the batch acked without telling the consumer keeps its offsets out of every
            # commit, so the whole batch is read again after the restart.
            event.message.acked = True
        self.error = exc
        self.state.status = "crashed"
        if self.dispatcher is not None:
            self.dispatcher.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.log.error("agent crashed; its uncommitted input will be read again on restart",
                       error=f"{type(exc).__name__}: {exc}")
        self.crashed.set()

    # -- heartbeats ----------------------------------------------------------------------------

    async def _beat_forever(self) -> None:
        interval = self.settings.agents.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self._publish_heartbeat(self.state.status if self.ready.is_set() else "starting")
            except Exception as exc:  # a missed heartbeat is not worth dying for
                self.log.warning("heartbeat not sent", error=str(exc))

    def lag(self) -> int:
        """Messages between what this agent has processed and the end of its assigned partitions."""
        consumer = self.app.consumer
        total = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = self._positions.get(tp)
            if position is None:
                committed = consumer._committed_offset.get(tp)  # faust has no public getter
                position = committed + 1 if committed is not None else 0
            total += max(0, highwater - position)
        return total

    def heartbeat(self, status: str) -> AgentHeartbeat:
        """This host's heartbeat payload now."""
        stats = self.dispatcher.stats if self.dispatcher else None
        return AgentHeartbeat(
            agent=self.name, instance=self.instance, status=status,  # type: ignore[arg-type]
            processed=stats.processed if stats else 0,
            dead_lettered=stats.dead_lettered if stats else 0,
            lag=self.lag() if self.ready.is_set() else 0,
            last_error=stats.last_error if stats else None,
        )

    async def _publish_heartbeat(self, status: str) -> None:
        # Heartbeats are about the process, not the market: wall-clock time is their event time.
        self._heartbeats += 1
        now_ms = time.time_ns() // 1_000_000
        env = Envelope.create(
            self.heartbeat(status if status != "crashed" else "draining"),
            key=f"{self.name}:{self.instance}", ts=now_ms, source=self.name,
            discriminator=f"{self.instance}:{self._heartbeats}",
        )
        future = await self.app.producer.send(
            AGENTS_HEARTBEAT.name, env.key.encode(), encode(env), None, (now_ms + 0.5) / 1000, headers(env),
        )
        await future


def faust_credentials(config: KafkaConfig) -> Any:
    """The faust credentials object for the configured security protocol (None for PLAINTEXT)."""
    protocol = config.security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = ssl_context_of(config) if protocol in {"SSL", "SASL_SSL"} else None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    if config.sasl_mechanism is None or config.sasl_username is None or config.sasl_password is None:
        raise ConfigError(
            f"kafka.security_protocol={protocol} needs kafka.sasl_mechanism, kafka.sasl_username and "
            "kafka.sasl_password"
        )
    return faust.SASLCredentials(
        username=config.sasl_username, password=reveal(config.sasl_password),
        ssl_context=ssl_context, mechanism=config.sasl_mechanism,
    )
