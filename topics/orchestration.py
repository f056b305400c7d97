"""What the orchestrator runs per stream, published on the compacted `orchestrator.state` topic.

One `StreamStateChanged` per change of a stream's regime, strategy, pin, position or open intents,
keyed by the stream (`exchange:symbol:timeframe`): the latest event per key is the stream's state,
so a consumer (or a restarted orchestrator without its Redis state) reads the topic to the end and
keeps the last event per key. Money and quantities are Decimal strings.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from topics.events import Event, register_event

IntentStatus = Literal["sent", "approved", "resized", "submitted", "partially_filled"]


class OpenIntent(BaseModel):
    """An intent on its way: sent to risk, approved, or with an order working at the venue."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_id: str
    side: Literal["buy", "sell"]
    strategy: str
    ts: int = Field(ge=0, description="event time the intent was made, UTC ms")
    status: IntentStatus = "sent"
    size: Decimal | None = Field(None, description="approved size once risk answered")


@register_event
class StreamStateChanged(Event):
    """One stream's state after a change."""

    TYPE: ClassVar[str] = "StreamStateChanged"
    VERSION: ClassVar[int] = 1

    stream: str = Field(min_length=1, description="exchange:symbol:timeframe")
    exchange: str
    symbol: str
    timeframe: str
    regime: str | None = None
    regime_since: int | None = Field(None, description="event time the regime was confirmed, UTC ms")
    strategy: str | None = Field(None, description="the active strategy")
    params: dict[str, JsonValue] = Field(default_factory=dict, description="its parameters")
    pinned: bool = Field(False, description="an operator pinned the strategy (control.commands)")
    position: Decimal = Field(Decimal(0), description="signed position of the instrument, base units")
    last_candle: int | None = Field(None, description="open time of the last candle seen, UTC ms")
    open_intents: tuple[OpenIntent, ...] = ()

    @property
    def key(self) -> str:
        return self.stream
