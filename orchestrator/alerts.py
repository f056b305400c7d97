"""The master alert desk: many agents' alerts in, what should reach a person out.

Pure: alerts in, notifications out, time from the alerts' event times. For each alert:

1. **Deduplicate.** Alerts with the same name and symbol within `dedupe_window_s` of the first
   one are folded into it: counted, not sent again. The next notification of that alert says
   how many were folded (`repeated_before`).
2. **Rank.** Severity orders what matters: critical > warning > info. `AgentFailed` is a
   warning (an agent could not use one message); nothing is dropped for being low, but each
   channel has a minimum severity.
3. **Rate-limit per channel.** Each channel sends at most `max_per_hour` notifications in any
   rolling hour of event time; critical alerts always go through. What a limit holds back is
   counted and reported in the next notification that channel sends (`suppressed`).

One `AlertNotification` is published per (alert, channel) that passes, keyed by channel, so a
notifier (Telegram, webhook) reads its channel's key in order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from config.settings import AlertingConfig, ChannelConfig
from topics.alerting import AlertNotification
from topics.envelope import Envelope
from topics.events import Event
from topics.system import AgentFailed, AlertRaised

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
HOUR_MS = 3_600_000


@dataclass
class _Open:
    """A deduplication window: the first alert of a (name, symbol) and how many joined it."""

    first_ts: int
    count: int = 1


@dataclass
class _Channel:
    config: ChannelConfig
    sent_at: deque[int] = field(default_factory=deque)
    suppressed: int = 0


class AlertDesk:
    """Deduplicates, ranks and rate-limits alerts per channel (see the module docstring)."""

    def __init__(self, config: AlertingConfig, source: str = "alert_orchestrator") -> None:
        self.config = config
        self.source = source
        self.windows: dict[tuple[str, str], _Open] = {}
        self.channels = [_Channel(channel) for channel in config.channels]

    def handle(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        name, severity, message, symbol = _describe(env.payload)
        key = (name, symbol or "")
        window = self.windows.get(key)
        repeated = 0
        if window is not None:
            if env.ts - window.first_ts < self.config.dedupe_window_s * 1000:
                window.count += 1
                return []
            repeated = window.count - 1  # folded into the last notification of this alert
        self.windows[key] = _Open(env.ts)
        out: list[Envelope[Event]] = []
        for channel in self.channels:
            if SEVERITY_RANK[severity] < SEVERITY_RANK[channel.config.min_severity]:
                continue
            if not self._admit(channel, env.ts, severity):
                channel.suppressed += 1
                continue
            note = AlertNotification(
                channel=channel.config.name, name=name, severity=severity,  # type: ignore[arg-type]
                message=message, symbol=symbol, alert_event_id=env.event_id, alert_source=env.source,
                suppressed_before=channel.suppressed, repeated_before=repeated,
            )
            channel.suppressed = 0
            out.append(Envelope.create(note, key=channel.config.name, ts=env.ts, source=self.source,
                                       caused_by=env, discriminator=channel.config.name))
        return out

    def _admit(self, channel: _Channel, ts: int, severity: str) -> bool:
        sent = channel.sent_at
        while sent and ts - sent[0] >= HOUR_MS:
            sent.popleft()
        if severity != "critical" and len(sent) >= channel.config.max_per_hour:
            return False
        sent.append(ts)
        return True

    def state(self) -> dict[str, Any]:
        """JSON-ready state, so a restarted desk neither repeats nor loses a limit."""
        return {
            "windows": [[name, symbol, w.first_ts, w.count] for (name, symbol), w in self.windows.items()],
            "channels": {c.config.name: {"sent_at": list(c.sent_at), "suppressed": c.suppressed}
                         for c in self.channels},
        }

    @classmethod
    def from_state(
        cls, config: AlertingConfig, state: dict[str, Any], source: str = "alert_orchestrator"
    ) -> AlertDesk:
        desk = cls(config, source)
        desk.windows = {(name, symbol): _Open(first, n) for name, symbol, first, n in state["windows"]}
        for channel in desk.channels:
            saved = state["channels"].get(channel.config.name)
            if saved:
                channel.sent_at = deque(saved["sent_at"])
                channel.suppressed = saved["suppressed"]
        return desk


def _describe(payload: Event) -> tuple[str, str, str, str | None]:
    if isinstance(payload, AlertRaised):
        return payload.name, payload.severity, payload.message, payload.symbol
    if isinstance(payload, AgentFailed):
        return f"agent_failed.{payload.agent}", "warning", payload.error, None
    raise TypeError(f"the alert desk cannot describe {type(payload).__name__}")
