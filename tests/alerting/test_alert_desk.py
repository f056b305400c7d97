"""The master alert desk: deduplicate, rank by severity, rate-limit per channel; and its agent."""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.alert_orchestrator import AlertOrchestratorAgent
from agents.runtime import AgentHost
from busio import collect, end_offsets, produce
from config import Settings
from config.settings import AlertingConfig, ChannelConfig
from infra import Endpoints
from memory.ports import InMemoryStateStore
from orchestrator.alerts import AlertDesk
from topics.alerting import AlertNotification
from topics.envelope import Envelope
from topics.registry import ALERT_NOTIFICATIONS, ALERTS
from topics.system import AgentFailed, AlertRaised

MINUTE = 60_000
CONFIG = AlertingConfig(
    dedupe_window_s=600,
    channels=[ChannelConfig(name="console", min_severity="info", max_per_hour=3),
              ChannelConfig(name="pager", min_severity="critical", max_per_hour=1)],
)


def alert(ts: int, name: str = "scanner.volume_spike", severity: str = "warning", symbol: str = "BTC/USDT",
          source: str = "scanner") -> Envelope[AlertRaised]:
    payload = AlertRaised(name=name, severity=severity, message=f"{name} on {symbol}", symbol=symbol)  # type: ignore[arg-type]
    return Envelope.create(payload, key=symbol, ts=ts, source=source, discriminator=str(uuid.uuid4()))


def notes(out: list[Envelope[Any]]) -> list[AlertNotification]:
    return [env.payload for env in out]


def test_repeats_within_the_window_are_folded_and_counted_in_the_next_notification() -> None:
    desk = AlertDesk(CONFIG)
    first = notes(desk.handle(alert(0)))
    assert [(n.channel, n.repeated_before) for n in first] == [("console", 0)]
    assert desk.handle(alert(5 * MINUTE)) == []
    assert desk.handle(alert(9 * MINUTE)) == []
    other_symbol = notes(desk.handle(alert(9 * MINUTE, symbol="ETH/USDT")))
    assert len(other_symbol) == 1  # another symbol is another alert
    later = notes(desk.handle(alert(11 * MINUTE)))
    assert [(n.channel, n.repeated_before) for n in later] == [("console", 2)]


def test_channels_take_their_minimum_severity_and_critical_bypasses_the_rate_limit() -> None:
    desk = AlertDesk(CONFIG)
    sent = [notes(desk.handle(alert(i * MINUTE, name=f"a{i}", severity="info"))) for i in range(5)]
    assert [len(n) for n in sent] == [1, 1, 1, 0, 0]  # console: 3 per hour
    critical = notes(desk.handle(alert(6 * MINUTE, name="kill", severity="critical")))
    assert sorted(n.channel for n in critical) == ["console", "pager"]
    assert next(n for n in critical if n.channel == "console").suppressed_before == 2
    after_an_hour = notes(desk.handle(alert(61 * MINUTE, name="late", severity="info")))
    assert [n.channel for n in after_an_hour] == ["console"]


def test_agent_failures_are_warnings_with_the_agent_in_the_name() -> None:
    failed = AgentFailed(agent="technical", error="DomainError: bad candle", topic="market.candles",
                         partition=0, offset=7)
    env = Envelope.create(failed, key="technical", ts=1000, source="technical")
    (note,) = notes(AlertDesk(CONFIG).handle(env))
    assert (note.name, note.severity, note.channel) == ("agent_failed.technical", "warning", "console")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.sampled_from(["info", "warning", "critical"]),
                          st.sampled_from(["x", "y", "z"])), max_size=60))
def test_limits_hold_and_a_restart_from_state_changes_nothing(items: list[tuple[int, str, str]]) -> None:
    stream = [alert(t * MINUTE, name=name, severity=sev) for t, sev, name in sorted(items)]
    straight = AlertDesk(CONFIG)
    sent = [(env.ts, note) for env in stream for note in notes(straight.handle(env))]
    for channel, limit in (("console", 3), ("pager", 1)):
        stamps = [ts for ts, note in sent if note.channel == channel and note.severity != "critical"]
        for i, ts in enumerate(stamps):  # never more than `limit` in any rolling hour
            assert sum(1 for other in stamps[: i + 1] if ts - other < 60 * MINUTE) <= limit
    half = len(stream) // 2
    first = AlertDesk(CONFIG)
    got = [n.model_dump_json() for env in stream[:half] for n in notes(first.handle(env))]
    resumed = AlertDesk.from_state(CONFIG, json.loads(json.dumps(first.state())))
    got += [n.model_dump_json() for env in stream[half:] for n in notes(resumed.handle(env))]
    assert got == [note.model_dump_json() for _, note in sent]


async def test_the_agent_turns_alerts_into_notifications_on_the_broker(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any],
) -> None:
    local = settings.model_copy(update={"alerting": CONFIG})
    start = await end_offsets(kafka, ALERT_NOTIFICATIONS.name)
    name = f"test.{uuid.uuid4().hex[:8]}"
    await produce(kafka, ALERTS.name, [alert(10**12, name=name), alert(10**12 + MINUTE, name=name)])
    host = AgentHost(AlertOrchestratorAgent, local, endpoints, store=InMemoryStateStore())
    await host.start()
    try:
        records = await collect(
            kafka, ALERT_NOTIFICATIONS.name, start=start,
            until=lambda got: any(orjson.loads(r.value)["payload"]["name"] == name for r in got),
        )
    finally:
        await host.stop()
    mine = [orjson.loads(r.value) for r in records if orjson.loads(r.value)["payload"]["name"] == name]
    assert [(m["key"], m["payload"]["channel"]) for m in mine] == [("console", "console")]
