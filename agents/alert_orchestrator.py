"""The master alert orchestrator agent: `alerts` in, `alerts.notifications` out (`orchestrator.alerts`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

from agents.base import AgentDeps
from config.settings import AlertingConfig
from orchestrator.alerts import AlertDesk
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import ALERT_NOTIFICATIONS, ALERTS, TopicSpec

STATE_KEY = "desk"


class AlertOrchestratorAgent:
    """Deduplicates, ranks and rate-limits every agent's alerts per delivery channel."""

    name: ClassVar[str] = "alert_orchestrator"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (ALERTS,)
    produces: ClassVar[tuple[TopicSpec, ...]] = (ALERT_NOTIFICATIONS,)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.config = deps.settings.alerting if deps.settings is not None else AlertingConfig()
        self.desk = AlertDesk(self.config, source=self.name)

    async def start(self) -> None:
        saved = await self.deps.store.load(STATE_KEY)
        if saved:
            # After a crash, alerts handled after this save come again: they fall into their own
            # dedupe window and are folded, not sent twice.
            self.desk = AlertDesk.from_state(self.config, orjson.loads(saved), source=self.name)

    async def checkpoint(self) -> None:
        await self.deps.store.save(STATE_KEY, orjson.dumps(self.desk.state()))

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        return self.desk.handle(env)
