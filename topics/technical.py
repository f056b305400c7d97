"""What the technical agent publishes per closed candle: indicators, discrete signals, a decision.

Every signal and the decision carry a `Confidence`: the Beta-Binomial posterior of how often
that signal was right before, on the same stream and in the same regime (outcomes are judged
`horizon` candles later against the fees, in event time only).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from topics.events import Event, register_event

Expectation = Literal["up", "down", "move", "flat"]


class Confidence(BaseModel):
    """Posterior of a signal's hit rate: Beta(1 + hits, 1 + trials - hits), a uniform prior."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float = Field(ge=0, le=1, description="posterior mean of the hit rate")
    lower: float = Field(ge=0, le=1, description="lower end of the equal-tailed credible interval")
    upper: float = Field(ge=0, le=1, description="upper end of the equal-tailed credible interval")
    level: float = Field(gt=0, lt=1, description="probability mass between lower and upper")
    hits: int = Field(ge=0, description="past signals of this name and regime that were right")
    trials: int = Field(ge=0, description="past signals of this name and regime whose outcome is known")
    regime: str = Field(description="the regime the counts are for (the current one)")


class DetectedSignal(BaseModel):
    """One discrete event on this candle (a cross, a breakout, a candlestick pattern)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="e.g. ema_cross_up, rsi_oversold, bb_squeeze, cdl_hammer")
    expects: Expectation = Field(
        description="what makes it a hit after `horizon` candles: up/down beyond 2 x fee, move = either "
        "way beyond 2 x fee"
    )
    confidence: Confidence


class Decision(BaseModel):
    """buy / sell / hold from the registered decision tree, or hold with the reason there is none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["buy", "sell", "hold"]
    reason: str
    probability: float | None = Field(None, ge=0, le=1, description="share of the tree leaf's class")
    model_version: int | None = Field(None, ge=1, description="version of the model that decided")
    confidence: Confidence = Field(description="hit rate of this action (hold: price stayed within 2 x fee)")


@register_event
class TechnicalSignal(Event):
    """The technical view of one closed candle of one stream."""

    TYPE: ClassVar[str] = "TechnicalSignal"
    VERSION: ClassVar[int] = 1

    exchange: str
    symbol: str
    timeframe: str = Field(pattern=r"^[0-9]+[smhdwM]$")
    open_time: int = Field(ge=0, description="UTC ms of the candle's first instant")
    close: float = Field(gt=0)
    regime: str = Field(description="provisional label: high_volatility, bull, bear, neutral or unknown")
    indicators: dict[str, float | int | None] = Field(
        description="every indicator column after this candle; null while warming up"
    )
    signals: list[DetectedSignal] = Field(default_factory=list)
    decision: Decision
