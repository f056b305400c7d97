"""What the MarketConditionDetector publishes: a stream's confirmed market regime changed.

Only changes are published (the topic is compacted, so the latest event per stream is its
current regime). The event says which detector proposed the regime — the trained forest or
the rule fallback — and why: the forest's class probabilities or the rules' evidence, plus the
causal features of the candle that confirmed it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from topics.events import Event, register_event

Regime = Literal["bull", "bear", "neutral", "high_volatility"]


@register_event
class RegimeChanged(Event):
    """The confirmed regime of one stream changed at the close of candle `open_time`."""

    TYPE: ClassVar[str] = "RegimeChanged"
    VERSION: ClassVar[int] = 1

    exchange: str
    symbol: str
    timeframe: str = Field(pattern=r"^[0-9]+[smhdwM]$")
    open_time: int = Field(ge=0, description="UTC ms of the first instant of the candle that confirmed it")
    regime: Regime
    previous: Regime | None = Field(description="the regime before; null for a stream's first regime")
    detector: Literal["forest", "rules"] = Field(
        description="forest: the registered random forest proposed it; rules: the transparent fallback"
    )
    model_version: int | None = Field(None, ge=1, description="version of the forest, if it decided")
    probabilities: dict[str, float] | None = Field(
        None, description="the forest's class probabilities for this candle (forest only)"
    )
    evidence: list[str] = Field(
        default_factory=list, description="the rules that held, e.g. 'adx_14 28.1 >= 20' (rules only)"
    )
    features: dict[str, float] = Field(description="the causal features of the candle, by name")
    dwell: int = Field(ge=0, description="candles the previous regime was held")
