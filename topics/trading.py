"""Trading decisions: what a strategy proposes (`OrderIntent`), what risk decides (`RiskDecision`),
the per-portfolio risk picture (`RiskBreakdown`) and the risk switches (`KillSwitchChanged`,
`RiskModeChanged`).

Money and quantities are `Decimal`, written as JSON strings so no consumer rounds them through a
binary float; ratios and statistics (win rate, volatility, correlation) are floats. Keys:
`exchange:symbol` for intents and decisions (per-instrument order holds), the portfolio name for
breakdowns, and the switch's name for risk control events.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from topics.events import Event, register_event
from topics.market import instrument_key

Side = Literal["buy", "sell"]
EntryType = Literal["market", "limit", "stop"]
Verdict = Literal["approved", "resized", "rejected"]
Sizing = Literal["fixed_fraction", "kelly", "requested", "reduce_only"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StrategyStats(_Frozen):
    """A strategy's measured track record, the input of Kelly sizing."""

    win_rate: float = Field(ge=0, le=1, description="share of closed trades that made money")
    payoff: float = Field(gt=0, description="average win / average loss, both as positive amounts")
    trades: int = Field(ge=0, description="closed trades the two figures are measured on")


@register_event
class OrderIntent(Event):
    """A strategy's proposal to trade. Nothing is ordered until risk approves it (`RiskDecision`).

    Give at most one of `size` (base units) and `risk_fraction` (share of equity to lose if the
    stop is hit); with neither, risk sizes the trade by its configured method. Stops and take
    profits left out are derived by risk from ATR multiples. A `reduce_only` intent only shrinks
    an existing position and is allowed while the system is risk-off.
    """

    TYPE: ClassVar[str] = "OrderIntent"
    VERSION: ClassVar[int] = 1

    decision_id: str = Field(
        min_length=1, description="deterministic id of the strategy's decision; the risk decision and "
        "the client order id derive from it, so a replayed intent never trades twice",
    )
    strategy: str = Field(min_length=1)
    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1, description="ccxt unified symbol, e.g. BTC/USDT")
    side: Side
    entry_type: EntryType = "market"
    entry_price: Decimal | None = Field(None, gt=0, description="limit or stop price; required for those")
    stop_price: Decimal | None = Field(None, gt=0, description="protective stop; unset: risk uses ATR")
    take_profit: Decimal | None = Field(None, gt=0, description="target; unset: risk uses ATR")
    size: Decimal | None = Field(None, gt=0, description="intended quantity in base units")
    risk_fraction: Decimal | None = Field(None, gt=0, le=1, description="share of equity to risk")
    reduce_only: bool = False
    stats: StrategyStats | None = Field(None, description="track record, required for Kelly sizing")
    trace: dict[str, JsonValue] = Field(
        default_factory=dict, description="why the strategy proposes this: inputs, signals, scores"
    )

    @model_validator(mode="after")
    def _check(self) -> OrderIntent:
        if self.entry_type != "market" and self.entry_price is None:
            raise ValueError(f"a {self.entry_type} intent needs entry_price")
        if self.size is not None and self.risk_fraction is not None:
            raise ValueError("give size or risk_fraction, not both")
        return self

    @property
    def key(self) -> str:
        return instrument_key(self.exchange, self.symbol)


class PositionSnapshot(_Frozen):
    """One open position at its mark. `quantity` is signed: positive long, negative short."""

    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    quantity: Decimal
    mark_price: Decimal = Field(gt=0)

    @property
    def key(self) -> str:
        return instrument_key(self.exchange, self.symbol)

    @property
    def notional(self) -> Decimal:
        """Absolute value at the mark, in the quote currency."""
        return abs(self.quantity) * self.mark_price


class PortfolioSnapshot(_Frozen):
    """What risk knows of a portfolio when it decides: equity and positions at one event time."""

    portfolio: str = Field("default", min_length=1)
    ts: int = Field(ge=0, description="event time of the valuation, UTC ms")
    equity: Decimal = Field(description="cash plus positions at mark, in the quote currency")
    positions: tuple[PositionSnapshot, ...] = ()

    @model_validator(mode="after")
    def _unique_positions(self) -> PortfolioSnapshot:
        keys = [position.key for position in self.positions]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"positions must be one per instrument; repeated: {', '.join(twice)}")
        return self

    def position(self, key: str) -> PositionSnapshot | None:
        return next((position for position in self.positions if position.key == key), None)


class TrailingStopSpec(_Frozen):
    """How the stop of an approved trade trails: `distance` behind the best price since entry."""

    distance: Decimal = Field(gt=0, description="price distance kept from the best price seen")
    atr_multiple: Decimal = Field(gt=0, description="the distance in ATRs when it was set")


@register_event
class RiskDecision(Event):
    """Risk's answer to one `OrderIntent`: approved, resized or rejected, always with reasons.

    It carries everything the execution agent needs (side, entry, size, stop, target, trailing)
    and the portfolio snapshot the decision was made on, so it can be audited later.
    """

    TYPE: ClassVar[str] = "RiskDecision"
    VERSION: ClassVar[int] = 1

    decision_id: str = Field(min_length=1, description="the intent's decision_id: one answer per intent")
    strategy: str
    exchange: str
    symbol: str
    side: Side
    entry_type: EntryType
    entry_price: Decimal | None = Field(None, description="the price risk sized at (market: last price)")
    verdict: Verdict
    size: Decimal = Field(ge=0, description="approved quantity in base units; 0 when rejected")
    requested_size: Decimal | None = Field(None, description="the intent's size, if it named one")
    sizing: Sizing | None = Field(None, description="how the size was set; unset when rejected early")
    risk_amount: Decimal = Field(ge=0, description="quote currency lost if the stop is hit: size x distance")
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop: TrailingStopSpec | None = None
    risk_reward: float | None = Field(None, description="(target - entry) / (entry - stop), in R")
    reasons: list[str] = Field(min_length=1, description="why: limits hit, sizing arithmetic, rejections")
    portfolio: PortfolioSnapshot

    @model_validator(mode="after")
    def _size_matches_verdict(self) -> RiskDecision:
        if (self.verdict == "rejected") != (self.size == 0):
            raise ValueError("a rejected decision has size 0 and an approved or resized one a positive size")
        return self

    @property
    def key(self) -> str:
        return instrument_key(self.exchange, self.symbol)


class HoldingRisk(_Frozen):
    """One position's share of the portfolio's risk."""

    exchange: str
    symbol: str
    notional: Decimal = Field(description="signed value at mark: negative for a short")
    weight: float = Field(description="signed notional / equity")
    volatility: float | None = Field(None, description="std of its returns, annualised like the portfolio's")
    liquidity: float | None = Field(None, description="|notional| / recent quote volume: share of the "
                                    "market's recent turnover it would take to exit")


@register_event
class RiskBreakdown(Event):
    """The risk picture of one portfolio, for the dashboard (compacted: the latest per portfolio)."""

    TYPE: ClassVar[str] = "RiskBreakdown"
    VERSION: ClassVar[int] = 1

    portfolio: str
    as_of: int = Field(ge=0, description="event time of the valuation, UTC ms")
    equity: Decimal
    gross_exposure: Decimal = Field(ge=0, description="sum of |notional|")
    net_exposure: Decimal = Field(description="sum of signed notional")
    leverage: float | None = Field(None, ge=0, description="gross exposure / equity; unset when equity <= 0")
    volatility: float | None = Field(
        None, description="std of the portfolio's returns at its current weights x sqrt(periods_per_year)"
    )
    periods_per_year: float = Field(gt=0, description="return periods per year used to annualise (1 = none)")
    liquidity: float | None = Field(None, description="the worst (largest) holding liquidity ratio")
    concentration_hhi: float | None = Field(
        None, ge=0, le=1, description="Herfindahl index of gross exposure shares: 1 = one holding"
    )
    largest_share: float | None = Field(None, ge=0, le=1, description="largest holding's share of gross")
    correlation: float | None = Field(
        None, ge=-1, le=1, description="average pairwise correlation of the holdings' returns (systemic risk)"
    )
    holdings: list[HoldingRisk] = Field(default_factory=list)


@register_event
class KillSwitchChanged(Event):
    """The kill switch was engaged (every intent rejected, open orders to cancel) or released."""

    TYPE: ClassVar[str] = "KillSwitchChanged"
    VERSION: ClassVar[int] = 1

    engaged: bool
    actor: str = Field(min_length=1, description="who flipped it: a user, the API, an agent")
    reason: str = Field(min_length=1)
    at: int = Field(ge=0, description="event time of the command, UTC ms")


@register_event
class RiskModeChanged(Event):
    """The drawdown circuit breaker moved the system to risk-off, or someone reset it to normal."""

    TYPE: ClassVar[str] = "RiskModeChanged"
    VERSION: ClassVar[int] = 1

    mode: Literal["normal", "risk_off"]
    actor: str = Field(min_length=1, description="`risk` when the breaker trips; who reset it otherwise")
    reason: str = Field(min_length=1)
    at: int = Field(ge=0, description="event time of the change, UTC ms")
    drawdown: float | None = Field(None, description="drawdown from peak equity when it tripped")
