"""Operator commands to the running system: switch a stream's strategy, pause or resume an agent.

Commands come from the ops API (after the operator's TOTP step) or the CLI. They are events like
any other, so they are recorded, replayable and audited; the agents they address apply them at
their event time. The kill switch is not here: it is a risk switch (`KillSwitchChanged` on
`risk.control`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, JsonValue

from topics.events import Event, register_event


@register_event
class StrategyOverridden(Event):
    """Pin a stream to a strategy (and parameters) whatever the regime, or release the pin."""

    TYPE: ClassVar[str] = "StrategyOverridden"
    VERSION: ClassVar[int] = 1

    stream: str = Field(min_length=1, description="exchange:symbol:timeframe the override applies to")
    strategy: str | None = Field(
        None, description="the strategy to run from now on; null releases the pin (the selector decides)"
    )
    params: dict[str, JsonValue] = Field(default_factory=dict, description="parameters for that strategy")
    actor: str = Field(min_length=1, description="who asked: a user name, `cli`")
    reason: str = Field(min_length=1)
    at: int = Field(ge=0, description="event time of the command, UTC ms")

    @property
    def key(self) -> str:
        return self.stream


@register_event
class AgentPauseChanged(Event):
    """Pause an agent (it stops consuming; its lag grows) or resume it."""

    TYPE: ClassVar[str] = "AgentPauseChanged"
    VERSION: ClassVar[int] = 1

    agent: str = Field(min_length=1, description="the agent's name, e.g. `technical`")
    paused: bool
    actor: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    at: int = Field(ge=0, description="event time of the command, UTC ms")

    @property
    def key(self) -> str:
        return self.agent
