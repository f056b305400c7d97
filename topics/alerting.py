"""What the master alert desk decided a person should see, per channel."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from topics.events import Event, register_event


@register_event
class AlertNotification(Event):
    """One alert to deliver on one channel, after deduplication, ranking and rate limits."""

    TYPE: ClassVar[str] = "AlertNotification"
    VERSION: ClassVar[int] = 1

    channel: str = Field(min_length=1, description="e.g. console, telegram, webhook")
    name: str
    severity: Literal["info", "warning", "critical"]
    message: str
    symbol: str | None = None
    alert_event_id: str = Field(description="the event_id of the alert on `alerts`")
    alert_source: str = Field(description="the agent that raised it")
    suppressed_before: int = Field(0, ge=0, description="alerts this channel's rate limit held back since")
    repeated_before: int = Field(0, ge=0, description="repeats of this alert folded into its last window")
