"""What the strategy optimiser publishes: how a strategy ranked on an instrument, overall and per regime.

One `StrategyRanked` per (stream, regime, strategy) and optimisation run, on the compacted topic
`strategies.rankings`: the latest event per key is the strategy's current standing there, which is
what the StrategySelector needs to order a regime's candidates. The score is out of sample (the
stitched test windows of a walk-forward run), never the in-sample fit.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, JsonValue

from topics.events import Event, register_event

RankedRegime = Literal["bull", "bear", "neutral", "high_volatility", "unknown"]


@register_event
class StrategyRanked(Event):
    """A strategy's out-of-sample score on a stream, overall (`regime` null) or within one regime."""

    TYPE: ClassVar[str] = "StrategyRanked"
    VERSION: ClassVar[int] = 1

    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    timeframe: str = Field(pattern=r"^[0-9]+[smhdwM]$")
    strategy: str = Field(min_length=1, description="registered strategy name")
    params: dict[str, JsonValue] = Field(description="the parameters the optimiser recommends")
    regime: RankedRegime | None = Field(
        description="the regime the score was measured in (bars entered in it); null: every bar"
    )
    metric: str = Field(min_length=1, description="the objective, e.g. sharpe (after fees)")
    score: float | None = Field(
        description="the objective over those bars, signed so higher is better; null if undefined"
    )
    feasible: bool = Field(description="false if the out-of-sample result broke the drawdown or trade limits")
    bars: int = Field(ge=0, description="out-of-sample bars the score is measured on")
    out_of_sample: dict[str, float | None] = Field(description="metrics of those out-of-sample bars")
    in_sample: dict[str, float | None] = Field(
        default_factory=dict, description="the same metrics averaged over the train windows (overall only)"
    )
    run_id: str = Field(min_length=1, description="the optimisation run (Postgres optimizer_runs.id)")
    at: int = Field(ge=0, description="event time: close of the last candle the run used, UTC ms")

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.symbol}:{self.timeframe}:{self.regime or 'all'}:{self.strategy}"
