"""What the API follows on Kafka for the dashboard: alerts, risk decisions, the risk switches and
the risk breakdowns.

One consumer without a group (it commits nothing and takes no partitions from the agents) reads
the tail of each topic on start and then follows it into small in-memory views:

- `alerts.notifications` -> the newest alerts, one entry per alert (the desk sends one
  notification per channel; they are folded by the alert's event id);
- `risk.decisions` -> the newest risk decisions by decision id (the risk step of a decision flow);
- `risk.control` -> the current kill switch and risk mode;
- `risk.breakdown` -> the latest risk breakdown of each portfolio (paper, a live venue's account).

Kafka being away is retried with backoff; the views stay as they were meanwhile, and `status`
says so (`/health` reports it).
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict, deque
from typing import Any, Literal

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from config.errors import RetriableError
from topics.alerting import AlertNotification
from topics.envelope import Envelope
from topics.events import Event
from topics.recording import seek_to_log_end
from topics.registry import (
    ALERT_NOTIFICATIONS,
    REGISTRY,
    RISK_BREAKDOWN,
    RISK_CONTROL,
    RISK_DECISIONS,
    TopicSpec,
)
from topics.serialization import DecodeError, decode
from topics.trading import KillSwitchChanged, RiskBreakdown, RiskDecision, RiskModeChanged

log = structlog.get_logger("cryptiq.api")

FeedStatus = Literal["starting", "following", "retrying", "stopped"]
# Records re-read per partition on start: enough for a dashboard, bounded for a long history.
# None: the whole topic. risk.control is small (switch changes only) and its latest change per key
# is the switch's state, however old, so it is read through (the embedded broker does not compact).
# Every portfolio's breakdown comes at least every `risk.breakdown_every_candles` candles, so the
# newest of each is in the tail.
TAIL: dict[str, int | None] = {
    ALERT_NOTIFICATIONS.name: 500, RISK_DECISIONS.name: 5000, RISK_CONTROL.name: None,
    RISK_BREAKDOWN.name: 2000,
}
MAX_ALERTS = 200
MAX_RISK_DECISIONS = 20_000
_POLL_MS = 200
_MAX_BACKOFF_S = 30.0


class Views:
    """The in-memory views the feed fills and the routes read."""

    def __init__(self) -> None:
        self.alerts: deque[dict[str, Any]] = deque(maxlen=MAX_ALERTS)  # newest last
        self._alert_index: dict[str, dict[str, Any]] = {}
        self.risk_decisions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.kill_switch: dict[str, Any] | None = None
        self.risk_mode: dict[str, Any] | None = None
        self.risk_breakdowns: dict[str, RiskBreakdown] = {}  # portfolio -> its latest
        self.consumed: dict[str, int] = {}  # topic -> events applied since start
        self.undecodable = 0
        self.alert_counts: dict[str, int] = {"info": 0, "warning": 0, "critical": 0}  # since start

    def apply(self, env: Envelope[Event], topic: str) -> None:
        """Fold one event into the views."""
        self.consumed[topic] = self.consumed.get(topic, 0) + 1
        payload = env.payload
        if isinstance(payload, AlertNotification):
            self._alert(env, payload)
        elif isinstance(payload, RiskDecision):
            self.risk_decisions[payload.decision_id] = {
                "event_id": env.event_id, "ts": env.ts, **payload.model_dump(mode="json"),
            }
            self.risk_decisions.move_to_end(payload.decision_id)
            while len(self.risk_decisions) > MAX_RISK_DECISIONS:
                self.risk_decisions.popitem(last=False)
        elif isinstance(payload, KillSwitchChanged):
            self.kill_switch = _switch(env)
        elif isinstance(payload, RiskModeChanged):
            self.risk_mode = _switch(env)
        elif isinstance(payload, RiskBreakdown):
            self.risk_breakdowns[payload.portfolio] = payload  # one portfolio, one key: log order

    def _alert(self, env: Envelope[Event], alert: AlertNotification) -> None:
        seen = self._alert_index.get(alert.alert_event_id)
        if seen is not None:
            if alert.channel not in seen["channels"]:
                seen["channels"].append(alert.channel)
            return
        entry = {
            "id": alert.alert_event_id, "ts": env.ts, "name": alert.name, "severity": alert.severity,
            "message": alert.message, "symbol": alert.symbol, "source": alert.alert_source,
            "channels": [alert.channel], "repeated_before": alert.repeated_before,
        }
        self.alert_counts[alert.severity] = self.alert_counts.get(alert.severity, 0) + 1
        if len(self.alerts) == self.alerts.maxlen:
            self._alert_index.pop(self.alerts[0]["id"], None)
        self.alerts.append(entry)
        self._alert_index[alert.alert_event_id] = entry

    def recent_alerts(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` alerts, newest first."""
        return list(reversed(self.alerts))[:limit]


def _switch(env: Envelope[Event]) -> dict[str, Any]:
    """A switch's state after its latest change. Latest in log order, not by `ts`: one key lives on
    one partition, so the log orders a switch's changes as the broker accepted them, whatever
    clocks their producers had (the risk agent stamps event time, operators wall-clock time)."""
    return {"ts": env.ts, "event_id": env.event_id, **env.payload.model_dump(mode="json")}


class KafkaFeed:
    """Follows the feed topics into `views` until `stop()`."""

    topics: tuple[TopicSpec, ...] = (ALERT_NOTIFICATIONS, RISK_DECISIONS, RISK_CONTROL, RISK_BREAKDOWN)

    def __init__(self, client_kwargs: dict[str, Any], views: Views) -> None:
        self.client_kwargs = client_kwargs
        self.views = views
        self.status: FeedStatus = "starting"
        self.last_error: str | None = None
        self.ready = asyncio.Event()  # set once the tails are read: the views are as fresh as Kafka
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.status = "stopped"

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._follow()
            except (KafkaError, OSError, RetriableError) as exc:
                self.status, self.last_error = "retrying", f"{type(exc).__name__}: {exc}"
                log.warning("api_feed_retrying", error=self.last_error, in_s=round(backoff, 2))
                await asyncio.sleep(backoff * (0.5 + random.random()))  # jitter: not in lock-step
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _follow(self) -> None:
        # earliest: an offset that retention already deleted restarts at the oldest record kept.
        consumer = AIOKafkaConsumer(**self.client_kwargs, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            partitions = await self._assign(consumer)
            if not partitions:
                raise RetriableError("the feed topics do not exist yet (run `cryptiq infra up`)")
            ends = await seek_to_log_end(consumer, partitions)
            for tp in partitions:
                tail = TAIL[tp.topic]
                if tail is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, max(0, ends[tp] - tail))
            self.status, self.last_error = "following", None
            caught_up = {tp for tp in partitions if ends[tp] == 0}
            while True:
                batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=5000)
                for tp, records in batch.items():
                    spec = REGISTRY.get(tp.topic)
                    for record in records:
                        try:
                            self.views.apply(decode(spec, record.value), tp.topic)
                        except DecodeError:
                            self.views.undecodable += 1  # the agents dead-letter it; a view just skips it
                for tp in partitions:
                    if tp not in caught_up and await consumer.position(tp) >= ends[tp]:
                        caught_up.add(tp)
                if len(caught_up) == len(partitions):
                    self.ready.set()
        finally:
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        partitions = [
            TopicPartition(spec.name, partition)
            for spec in self.topics
            for partition in sorted(consumer.partitions_for_topic(spec.name) or ())
        ]
        if partitions:
            consumer.assign(partitions)
        return partitions
