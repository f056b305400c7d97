"""The risk engine: every `OrderIntent` becomes a `RiskDecision` (approved, resized or rejected).

Pure: no I/O, no clock, no randomness. Time comes from the inputs (the portfolio's valuation
time and the commands' event times), so a replay decides exactly as the live run did. Money and
sizes are `Decimal`; only statistics (win rate, volatility, correlation) are floats.

What it does, in the order `RiskEngine.evaluate` applies it:

1. kill switch: when engaged, every intent is rejected until it is released;
2. reduce-only intents (closing part of a position) are approved whenever the switch is off;
3. the drawdown circuit breaker (risk-off until reset) and the daily loss limit (UTC day);
4. stop and target from the intent or from ATR multiples; risk-reward at least the minimum;
5. size from the fraction of equity at risk over the stop distance: fixed fraction or
   fractional, capped Kelly from the strategy's win rate and payoff;
6. limits: open positions, per-symbol exposure, net exposure and leverage resize the trade to
   fit, or reject it when nothing fits, counting orders approved but not yet filled (`pending`)
   as held; the venue's step size and minimums last.

The engine's own state (`RiskState`: switches, peak equity, the day's first equity) is a frozen
model the risk agent saves after each message and hands back on restart. Switch changes made
elsewhere (the CLI, the ops API) arrive as events and are taken with `apply`.

`risk_breakdown` is the portfolio's risk picture; `aligned_log_returns` lines up the holdings'
recent closes in time for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from config.settings import RiskConfig
from execution.market import Market
from topics.trading import (
    HoldingRisk,
    KillSwitchChanged,
    OrderIntent,
    PortfolioSnapshot,
    PositionSnapshot,
    RiskBreakdown,
    RiskDecision,
    RiskModeChanged,
    Side,
    Sizing,
    TrailingStopSpec,
)

DAY_MS = 86_400_000
DEFAULT_STEP = Decimal("0.00000001")  # sizes without venue rules: satoshi precision
PositionSide = Literal["long", "short"]
Number = Decimal | float | int | str


def to_decimal(name: str, value: Number) -> Decimal:
    """`value` as an exact Decimal (floats through their shortest repr: 0.1 -> 0.1), finite or ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _sign(side: Side) -> int:
    return 1 if side == "buy" else -1


def _pct(value: Decimal | float) -> str:
    return f"{float(value):.2%}"


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- sizing, stops and ratios: small pure functions the engine and the ladder share ----


def kelly_fraction(win_rate: Number, payoff: Number) -> Decimal:
    """Full Kelly, the share of equity to risk per bet: f* = W - (1 - W) / R.

    W is the win rate and R the payoff (average win / average loss). f* <= 0 means the record
    shows no edge: the right bet is none. Example: W 0.6, R 2 -> 0.4.
    """
    win, ratio = to_decimal("win_rate", win_rate), to_decimal("payoff", payoff)
    if not 0 <= win <= 1:
        raise ValueError(f"win_rate must be between 0 and 1, got {win_rate!r}")
    if ratio <= 0:
        raise ValueError(f"payoff must be positive, got {payoff!r}")
    return win - (1 - win) / ratio


def fixed_fraction_size(equity: Decimal, fraction: Decimal, entry: Decimal, stop: Decimal) -> Decimal:
    """The quantity losing `fraction` of `equity` at the stop: equity x fraction / |entry - stop|."""
    distance = abs(entry - stop)
    if distance == 0:
        raise ValueError(f"the stop ({stop}) must differ from the entry ({entry})")
    return equity * fraction / distance


def atr_levels(
    side: Side, entry: Decimal, atr: Decimal, stop_multiple: Decimal, take_profit_multiple: Decimal
) -> tuple[Decimal, Decimal]:
    """(stop, target) `stop_multiple` ATRs against and `take_profit_multiple` ATRs in favour of `side`."""
    sign = _sign(side)
    return entry - sign * stop_multiple * atr, entry + sign * take_profit_multiple * atr


def risk_reward(side: Side, entry: Decimal, stop: Decimal, take_profit: Decimal) -> Decimal:
    """Reward per unit of risk, in R: (target - entry) / (entry - stop) for a buy, mirrored for a sell."""
    sign = _sign(side)
    risk, reward = sign * (entry - stop), sign * (take_profit - entry)
    if risk <= 0:
        raise ValueError(f"a {side} needs its stop ({stop}) on the losing side of the entry ({entry})")
    return reward / risk


def floor_to_step(quantity: Decimal, step: Decimal) -> Decimal:
    """`quantity` rounded down to a whole number of `step`s: never more than asked."""
    return (quantity / step).to_integral_value(rounding=ROUND_FLOOR) * step


@dataclass(frozen=True, slots=True)
class TrailingStop:
    """A stop `distance` behind the best price since entry. It only ever moves in the position's favour.

    `update` with each new price returns the next state; `is_hit` says whether a price stops
    the position out.
    """

    side: PositionSide
    distance: Decimal
    stop: Decimal
    best: Decimal

    @classmethod
    def start(
        cls, side: PositionSide, entry: Number, distance: Number, stop: Number | None = None
    ) -> TrailingStop:
        """A trailing stop for a position entered at `entry`; its first stop is `stop` or `distance` away."""
        entry_d, distance_d = to_decimal("entry", entry), to_decimal("distance", distance)
        if distance_d <= 0:
            raise ValueError(f"distance must be positive, got {distance!r}")
        sign = 1 if side == "long" else -1
        first = entry_d - sign * distance_d if stop is None else to_decimal("stop", stop)
        if sign * (entry_d - first) <= 0:
            raise ValueError(f"a {side} stop ({first}) must be on the losing side of the entry ({entry_d})")
        return cls(side, distance_d, first, entry_d)

    def update(self, price: Number) -> TrailingStop:
        """The stop after `price` traded: follows a new best price, never gives ground back."""
        price_d = to_decimal("price", price)
        if self.side == "long":
            best = max(self.best, price_d)
            stop = max(self.stop, best - self.distance)
        else:
            best = min(self.best, price_d)
            stop = min(self.stop, best + self.distance)
        return TrailingStop(self.side, self.distance, stop, best)

    def is_hit(self, price: Number) -> bool:
        price_d = to_decimal("price", price)
        return price_d <= self.stop if self.side == "long" else price_d >= self.stop


# ---- the engine ----


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """What risk knows of the intent's instrument when it decides.

    `price` is the last price (a market intent is sized at it); `atr` the latest average true
    range (stops, targets and trailing distances); `rules` the venue's step size and minimums
    (sizes are rounded down to the step; unset: 8 decimals and `min_notional` only).
    Floats are accepted and made exact through their shortest repr.
    """

    price: Decimal
    atr: Decimal | None = None
    rules: Market | None = None

    def __post_init__(self) -> None:
        price = to_decimal("price", self.price)
        if price <= 0:
            raise ValueError(f"price must be positive, got {self.price!r}")
        object.__setattr__(self, "price", price)
        if self.atr is not None:
            atr = to_decimal("atr", self.atr)
            if atr <= 0:
                raise ValueError(f"atr must be positive, got {self.atr!r}")
            object.__setattr__(self, "atr", atr)


class RiskState(BaseModel):
    """The engine's memory: the switches' last changes, peak equity and the UTC day's first equity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kill_switch: KillSwitchChanged | None = None
    risk_mode: RiskModeChanged | None = None
    peak_equity: Decimal | None = None
    day_start: int | None = None  # UTC ms of 00:00 of the day being tracked
    day_start_equity: Decimal | None = None

    @property
    def kill_switch_on(self) -> bool:
        return self.kill_switch is not None and self.kill_switch.engaged

    @property
    def risk_off(self) -> bool:
        return self.risk_mode is not None and self.risk_mode.mode == "risk_off"


class _Rejected(Exception):  # noqa: N818 - private control flow inside evaluate, never escapes it
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Plan:
    """Stop, target and trailing distance of a trade, with the reasons they are what they are."""

    stop: Decimal
    take_profit: Decimal
    risk_reward: Decimal
    trailing: TrailingStopSpec | None
    reasons: tuple[str, ...]


class RiskEngine:
    """Decides on intents against a `RiskConfig`, holding `RiskState` between calls.

    Commands (`engage_kill_switch`, `release_kill_switch`, `reset_risk_off`) and `observe`
    return the events of the state changes they make, or None when nothing changed.
    """

    def __init__(self, config: RiskConfig, state: RiskState | None = None) -> None:
        self.config = config
        self._state = state if state is not None else RiskState()

    @property
    def state(self) -> RiskState:
        return self._state

    # -- commands --

    def engage_kill_switch(self, *, actor: str, at: int, reason: str) -> KillSwitchChanged | None:
        """Reject every intent from now on, until `release_kill_switch`. None if it is already on."""
        if self._state.kill_switch_on:
            return None
        event = KillSwitchChanged(engaged=True, actor=actor, reason=reason, at=at)
        self._state = self._state.model_copy(update={"kill_switch": event})
        return event

    def release_kill_switch(self, *, actor: str, at: int, reason: str) -> KillSwitchChanged | None:
        """Let intents through again. None if the switch is not on."""
        if not self._state.kill_switch_on:
            return None
        event = KillSwitchChanged(engaged=False, actor=actor, reason=reason, at=at)
        self._state = self._state.model_copy(update={"kill_switch": event})
        return event

    def reset_risk_off(self, *, actor: str, at: int, reason: str) -> RiskModeChanged | None:
        """Leave risk-off. The peak is forgotten and re-anchored at the next valuation, so the breaker
        measures drawdown afresh instead of tripping again on the loss it already reported."""
        if not self._state.risk_off:
            return None
        event = RiskModeChanged(mode="normal", actor=actor, reason=reason, at=at)
        self._state = self._state.model_copy(update={"risk_mode": event, "peak_equity": None})
        return event

    def apply(self, event: KillSwitchChanged | RiskModeChanged) -> bool:
        """Take a switch change made elsewhere (the CLI, the ops API, this engine's own trip read back
        from `risk.control`) as the switch's state. True if it changed anything.

        The latest change wins: a release lifts an engaged switch whoever engaged it, and a
        `normal` mode leaves risk-off the way `reset_risk_off` does (the peak re-anchors).
        """
        state = self._state
        if isinstance(event, KillSwitchChanged):
            if state.kill_switch == event:
                return False
            self._state = state.model_copy(update={"kill_switch": event})
            return True
        if state.risk_mode == event:
            return False
        update: dict[str, object] = {"risk_mode": event}
        if event.mode == "normal" and state.risk_off:
            update["peak_equity"] = None
        self._state = state.model_copy(update=update)
        return True

    def observe(self, portfolio: PortfolioSnapshot) -> RiskModeChanged | None:
        """Track peak equity and the UTC day's first equity; trip the drawdown breaker if it is due.

        The agent calls this on every valuation (not only on intents) so the day's first equity
        and the peak are measured when they happen; `evaluate` calls it too.
        """
        state, equity = self._state, portfolio.equity
        day = portfolio.ts - portfolio.ts % DAY_MS
        update: dict[str, object] = {}
        if state.day_start is None or day > state.day_start:
            update |= {"day_start": day, "day_start_equity": equity}
        peak = equity if state.peak_equity is None else max(state.peak_equity, equity)
        update["peak_equity"] = peak
        event = None
        if not state.risk_off and peak > 0:
            drawdown = (peak - equity) / peak
            if drawdown >= self.config.max_drawdown:
                event = RiskModeChanged(
                    mode="risk_off", actor="risk", at=portfolio.ts, drawdown=float(drawdown),
                    reason=f"drawdown {_pct(drawdown)} from peak equity {peak} reached max_drawdown "
                    f"{_pct(self.config.max_drawdown)}",
                )
                update["risk_mode"] = event
        self._state = state.model_copy(update=update)
        return event

    # -- the decision --

    def evaluate(
        self, intent: OrderIntent, portfolio: PortfolioSnapshot, market: MarketSnapshot,
        pending: Sequence[PositionSnapshot] = (),
    ) -> RiskDecision:
        """Approve, resize or reject `intent`; every decision says why in `reasons`.

        `pending` are orders approved earlier that have not filled yet (signed quantity, valued at
        the price they were approved at): the exposure and position limits count them as if they
        had filled, so intents repeated before the first fill comes back cannot stack past a limit.
        It observes `portfolio` first; call `observe` yourself beforehand to publish a breaker trip.
        """
        self.observe(portfolio)
        entry = market.price if intent.entry_type == "market" else intent.entry_price
        assert entry is not None  # OrderIntent requires entry_price for limit and stop intents
        common = {
            "decision_id": intent.decision_id, "strategy": intent.strategy, "exchange": intent.exchange,
            "symbol": intent.symbol, "side": intent.side, "entry_type": intent.entry_type,
            "entry_price": entry, "requested_size": intent.size, "portfolio": portfolio,
        }
        try:
            self._check_kill_switch()
            if intent.reduce_only:
                return self._reduce(intent, portfolio, market, common)
            return self._open(intent, portfolio, market, entry, common, pending=pending)
        except _Rejected as rejection:
            return RiskDecision(**common, verdict="rejected", size=Decimal(0), risk_amount=Decimal(0),
                                reasons=[rejection.reason])

    def _check_kill_switch(self) -> None:
        switch = self._state.kill_switch
        if switch is not None and switch.engaged:
            raise _Rejected(f"kill switch on since {_utc(switch.at)} ({switch.actor}: {switch.reason})")

    def _reduce(
        self, intent: OrderIntent, portfolio: PortfolioSnapshot, market: MarketSnapshot,
        common: dict[str, object],
    ) -> RiskDecision:
        position = portfolio.position(intent.key)
        held = position.quantity if position is not None else Decimal(0)
        if _sign(intent.side) * held >= 0:
            wanted = "short" if intent.side == "buy" else "long"
            raise _Rejected(f"reduce-only {intent.side} but there is no {wanted} {intent.symbol} position "
                            "to reduce")
        size = min(intent.size, abs(held)) if intent.size is not None else abs(held)
        size = self._floor(size, market)
        if size <= 0:
            raise _Rejected(f"reduce-only size rounds to 0 at the step {self._step(market)}")
        reasons = [f"reduce-only: closes {size} of the {abs(held)} {intent.symbol} position; allowed in "
                   "risk-off and past the daily loss limit because it lowers risk"]
        resized = intent.size is not None and size != intent.size
        if resized:
            reasons.append(f"resized from {intent.size} to {size}: never more than the position")
        return RiskDecision(**common, verdict="resized" if resized else "approved", size=size,
                            sizing="reduce_only", risk_amount=Decimal(0), reasons=reasons)

    def _open(
        self, intent: OrderIntent, portfolio: PortfolioSnapshot, market: MarketSnapshot, entry: Decimal,
        common: dict[str, object], *, pending: Sequence[PositionSnapshot] = (),
    ) -> RiskDecision:
        if portfolio.equity <= 0:
            raise _Rejected(f"equity {portfolio.equity} is not positive: nothing can be put at risk")
        self._check_breakers(portfolio)
        plan = self._plan(intent, entry, market)
        size, sizing, resized, reasons = self._size(intent, portfolio.equity, entry, plan.stop)
        size, limited, limit_reasons = self._apply_limits(intent, portfolio, entry, size, pending)
        size = self._floor(size, market)
        self._check_minimums(size, entry, market)
        if intent.size is not None and size != intent.size:
            resized = True
        risk_amount = size * abs(entry - plan.stop)
        reasons += limit_reasons + list(plan.reasons)
        if resized or limited:
            reasons.insert(0, f"resized to {size} (risk {risk_amount:.2f}, "
                              f"{_pct(risk_amount / portfolio.equity)} of equity)")
        return RiskDecision(
            **common, verdict="resized" if resized or limited else "approved", size=size, sizing=sizing,
            risk_amount=risk_amount, stop_loss=plan.stop, take_profit=plan.take_profit,
            trailing_stop=plan.trailing, risk_reward=float(plan.risk_reward), reasons=reasons,
        )

    def _check_breakers(self, portfolio: PortfolioSnapshot) -> None:
        mode = self._state.risk_mode
        if mode is not None and mode.mode == "risk_off":
            raise _Rejected(f"risk-off since {_utc(mode.at)}: {mode.reason}; only reduce-only intents pass "
                            "until the breaker is reset")
        start = self._state.day_start_equity
        if start is not None and start > 0:
            loss = (start - portfolio.equity) / start
            if loss >= self.config.daily_loss_limit:
                raise _Rejected(
                    f"daily loss {_pct(loss)} of the UTC day's first equity {start} reached daily_loss_limit "
                    f"{_pct(self.config.daily_loss_limit)}: no new risk until 00:00 UTC"
                )

    def _plan(self, intent: OrderIntent, entry: Decimal, market: MarketSnapshot) -> _Plan:
        config, atr, reasons = self.config, market.atr, []
        stop, target = intent.stop_price, intent.take_profit
        if (stop is None or target is None) and atr is None:
            missing = " and ".join(name for name, value in (("stop", stop), ("take profit", target))
                                   if value is None)
            raise _Rejected(f"the intent has no {missing} and there is no ATR to derive it from")
        if atr is not None:
            atr_stop, atr_target = atr_levels(
                intent.side, entry, atr, config.stop_atr, config.take_profit_atr
            )
            if stop is None:
                stop = atr_stop
                reasons.append(f"stop {stop} = entry {entry} ∓ stop_atr {config.stop_atr} x ATR {atr}")
            if target is None:
                target = atr_target
                reasons.append(f"take profit {target} = entry {entry} ± take_profit_atr "
                               f"{config.take_profit_atr} x ATR {atr}")
        assert stop is not None
        assert target is not None
        if stop <= 0:
            raise _Rejected(f"the stop {stop} is not a positive price: the ATR ({atr}) is too large for "
                            "the entry")
        sign = _sign(intent.side)
        if sign * (entry - stop) <= 0:
            raise _Rejected(f"stop {stop} is not {'below' if sign > 0 else 'above'} the entry {entry} of a "
                            f"{intent.side}")
        if sign * (target - entry) <= 0:
            raise _Rejected(f"take profit {target} is not {'above' if sign > 0 else 'below'} the entry "
                            f"{entry} of a {intent.side}")
        ratio = risk_reward(intent.side, entry, stop, target)
        if ratio < config.min_risk_reward:
            raise _Rejected(f"risk-reward {ratio:.2f} is below min_risk_reward {config.min_risk_reward} "
                            f"(entry {entry}, stop {stop}, target {target})")
        reasons.append(f"risk-reward {ratio:.2f} >= min_risk_reward {config.min_risk_reward}")
        trailing = None
        if config.trailing_atr > 0 and atr is not None:
            trailing = TrailingStopSpec(distance=config.trailing_atr * atr, atr_multiple=config.trailing_atr)
            reasons.append(f"trailing stop {trailing.distance} = trailing_atr {config.trailing_atr} x ATR "
                           f"{atr}")
        return _Plan(stop, target, ratio, trailing, tuple(reasons))

    def _kelly(self, intent: OrderIntent) -> Decimal:
        stats = intent.stats
        if stats is None:
            raise _Rejected("kelly sizing needs the strategy's measured win rate and payoff (intent.stats)")
        if stats.trades < self.config.kelly_min_trades:
            raise _Rejected(f"kelly sizing needs at least kelly_min_trades {self.config.kelly_min_trades} "
                            f"measured trades; {intent.strategy} has {stats.trades}")
        full = kelly_fraction(stats.win_rate, stats.payoff)
        if full <= 0:
            raise _Rejected(f"Kelly fraction {full:.4f} <= 0 (win rate {stats.win_rate}, payoff "
                            f"{stats.payoff}): the strategy shows no edge, so the right bet is none")
        return full * self.config.kelly_fraction

    def _size(
        self, intent: OrderIntent, equity: Decimal, entry: Decimal, stop: Decimal
    ) -> tuple[Decimal, Sizing, bool, list[str]]:
        """The size from the fraction of equity at risk, and whether a request was cut back."""
        config, distance = self.config, abs(entry - stop)
        requested: Decimal | None = None
        if intent.size is not None:
            requested = intent.size * distance / equity
        elif intent.risk_fraction is not None:
            requested = intent.risk_fraction
        kelly = self._kelly(intent) if config.sizing == "kelly" else None
        candidates: list[tuple[Decimal, Sizing, str]] = []
        if requested is not None:
            candidates.append((requested, "requested", "the intent's request"))
        elif kelly is not None:
            candidates.append((kelly, "kelly", f"kelly_fraction {config.kelly_fraction} x full Kelly"))
        else:
            candidates.append((config.risk_per_trade, "fixed_fraction", "risk_per_trade"))
        if kelly is not None and requested is not None:
            cap = f"the Kelly cap (kelly_fraction {config.kelly_fraction} x full Kelly)"
            candidates.append((kelly, "kelly", cap))
        candidates.append((config.max_risk_per_trade, "fixed_fraction", "max_risk_per_trade"))
        fraction, sizing, source = min(candidates, key=lambda item: item[0])  # first of equals wins
        resized = requested is not None and fraction < requested
        if requested is not None and not resized and intent.size is not None:
            size = intent.size
        else:
            size = fixed_fraction_size(equity, fraction, entry, stop)
        reasons = [f"size {size.normalize():f} = equity {equity} x {_pct(fraction)} at risk ({source}) / "
                   f"stop distance {distance} (entry {entry}, stop {stop})"]
        if resized:
            reasons.append(f"the intent asked to risk {_pct(requested or 0)}; {source} allows "
                           f"{_pct(fraction)}")
        return size, sizing, resized, reasons

    def _apply_limits(
        self, intent: OrderIntent, portfolio: PortfolioSnapshot, price: Decimal, size: Decimal,
        pending: Sequence[PositionSnapshot] = (),
    ) -> tuple[Decimal, bool, list[str]]:
        """`size` cut to what the exposure limits leave room for; rejected when there is none.

        Exposure is valued at the entry price for this instrument and at the marks for the rest;
        pending orders count as filled (see `evaluate`).
        """
        config, equity, sign = self.config, portfolio.equity, _sign(intent.side)
        book = _with_pending(portfolio.positions, pending)
        position = next((p for p in book if p.key == intent.key), None)
        held = position.quantity if position is not None else Decimal(0)
        open_positions = [p for p in book if p.quantity != 0]
        if held == 0 and len(open_positions) >= config.max_open_positions:
            raise _Rejected(f"{len(open_positions)} positions are open, max_open_positions is "
                            f"{config.max_open_positions}: no new instrument")
        others = [p for p in open_positions if p.key != intent.key]
        gross_others = sum((p.notional for p in others), Decimal(0))
        net_others = sum((p.quantity * p.mark_price for p in others), Decimal(0))
        # The largest size each limit allows; a trade against the position reduces it first.
        symbol_room = config.max_symbol_exposure * equity / price - sign * held
        net_room = (config.max_total_exposure * equity - sign * (net_others + held * price)) / price
        gross_free = (config.max_leverage * equity - gross_others) / price
        # A trade against the position closes it first, which frees its exposure, then opens the other way.
        gross_room = gross_free - abs(held) if sign * held >= 0 else max(abs(held), gross_free + abs(held))
        rooms = [
            (symbol_room, "max_symbol_exposure", config.max_symbol_exposure),
            (net_room, "max_total_exposure", config.max_total_exposure),
            (gross_room, "max_leverage", config.max_leverage),
        ]
        room, name, limit = min(rooms, key=lambda item: item[0])
        if room <= 0:
            raise _Rejected(f"{name} {limit} x equity is used up: no room for more {intent.side} "
                            f"{intent.symbol}")
        new_held = held + sign * min(size, room)
        symbol_after = abs(new_held) * price / equity
        net_after = abs(net_others + new_held * price) / equity
        leverage_after = (gross_others + abs(new_held) * price) / equity
        reasons = [
            f"after the trade: {intent.symbol} exposure {_pct(symbol_after)} (max_symbol_exposure "
            f"{_pct(config.max_symbol_exposure)}), net {_pct(net_after)} (max_total_exposure "
            f"{_pct(config.max_total_exposure)}), leverage {leverage_after:.2f} (max_leverage "
            f"{config.max_leverage}), {len(others) + (new_held != 0)} positions (max_open_positions "
            f"{config.max_open_positions})"
        ]
        if pending:
            working = sum(1 for p in pending if p.quantity != 0)
            reasons.append(f"counts {working} pending order(s) not filled yet as held")
        if size <= room:
            return size, False, reasons
        reasons.insert(0, f"cut from {size.normalize():f} to {room.normalize():f} by {name} {limit}")
        return room, True, reasons

    def _step(self, market: MarketSnapshot) -> Decimal:
        return market.rules.step_size if market.rules is not None else DEFAULT_STEP

    def _floor(self, size: Decimal, market: MarketSnapshot) -> Decimal:
        if market.rules is not None:
            return market.rules.floor_quantity(size)
        return floor_to_step(size, DEFAULT_STEP)

    def _check_minimums(self, size: Decimal, price: Decimal, market: MarketSnapshot) -> None:
        rules = market.rules
        min_quantity = rules.min_quantity if rules is not None else Decimal(0)
        min_notional = max(self.config.min_notional, rules.min_notional if rules is not None else Decimal(0))
        if size <= 0 or size < min_quantity:
            least = max(min_quantity, self._step(market))
            raise _Rejected(f"size {size:f} is below the minimum quantity {least:f}")
        if size * price < min_notional:
            raise _Rejected(f"order value {size * price:.2f} is below the minimum notional {min_notional}")


def _with_pending(
    positions: Sequence[PositionSnapshot], pending: Sequence[PositionSnapshot]
) -> list[PositionSnapshot]:
    """Positions with pending orders added per instrument; an instrument only pending is valued at
    the order's price, one already held at its mark."""
    book = {p.key: p for p in positions}
    for order in pending:
        held = book.get(order.key)
        if held is None:
            book[order.key] = order
        else:
            book[order.key] = held.model_copy(update={"quantity": held.quantity + order.quantity})
    return list(book.values())


# ---- the portfolio's risk picture ----


def risk_breakdown(
    portfolio: PortfolioSnapshot,
    *,
    returns: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    quote_volumes: Mapping[str, float] | None = None,
    periods_per_year: float = 1.0,
) -> RiskBreakdown:
    """Exposure, volatility, liquidity, concentration and correlation of `portfolio`.

    `returns` maps each holding's `exchange:symbol` to its recent per-period returns, aligned
    in time and of one length; `quote_volumes` to its recent traded value in the quote
    currency. A figure that needs an input no holding has is left unset rather than guessed.
    """
    returns, quote_volumes = returns or {}, quote_volumes or {}
    if not (periods_per_year > 0 and math.isfinite(periods_per_year)):
        raise ValueError(f"periods_per_year must be a positive number, got {periods_per_year!r}")
    equity = portfolio.equity
    held = [p for p in portfolio.positions if p.quantity != 0]
    gross = sum((p.notional for p in held), Decimal(0))
    net = sum((p.quantity * p.mark_price for p in held), Decimal(0))
    series = {key: np.asarray(values, dtype=np.float64) for key, values in returns.items()}
    lengths = {len(values) for key, values in series.items() if portfolio.position(key) is not None}
    if len(lengths) > 1:
        raise ValueError(f"the holdings' return series must have one length, got {sorted(lengths)}")
    scale = math.sqrt(periods_per_year)
    holdings = []
    for position in held:
        signed = position.quantity * position.mark_price
        values = series.get(position.key)
        volume = quote_volumes.get(position.key)
        holdings.append(HoldingRisk(
            exchange=position.exchange, symbol=position.symbol, notional=signed,
            weight=float(signed / equity) if equity > 0 else 0.0,
            volatility=_std(values) * scale if values is not None and len(values) > 1 else None,
            liquidity=float(position.notional) / volume if volume else None,
        ))
    liquidities = [h.liquidity for h in holdings if h.liquidity is not None]
    shares = [float(p.notional / gross) for p in held] if gross > 0 else []
    return RiskBreakdown(
        portfolio=portfolio.portfolio, as_of=portfolio.ts, equity=equity,
        gross_exposure=gross, net_exposure=net,
        leverage=float(gross / equity) if equity > 0 else None,
        volatility=_portfolio_volatility(holdings, held, series, scale),
        periods_per_year=periods_per_year,
        liquidity=max(liquidities) if liquidities else None,
        concentration_hhi=min(1.0, sum(share * share for share in shares)) if shares else None,
        largest_share=max(shares) if shares else None,
        correlation=_average_correlation([series[p.key] for p in held if p.key in series]),
        holdings=holdings,
    )


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1))


def _portfolio_volatility(
    holdings: list[HoldingRisk], held: list[PositionSnapshot], series: Mapping[str, np.ndarray], scale: float
) -> float | None:
    """Std of the weighted sum of the holdings' returns: needs every holding's returns."""
    if not held or any(p.key not in series for p in held) or len(series[held[0].key]) < 2:
        return None
    combined = sum(h.weight * series[p.key] for h, p in zip(holdings, held, strict=True))
    return _std(np.asarray(combined)) * scale


def _average_correlation(columns: list[np.ndarray]) -> float | None:
    """Mean pairwise Pearson correlation; pairs with a constant series (undefined) are left out."""
    if len(columns) < 2 or len(columns[0]) < 3:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.corrcoef(np.vstack(columns))
    pairs = matrix[np.triu_indices(len(columns), k=1)]
    pairs = pairs[np.isfinite(pairs)]
    return float(np.clip(pairs.mean(), -1.0, 1.0)) if pairs.size else None


YEAR_MS = 365 * DAY_MS


def aligned_log_returns(
    closes: Mapping[str, Sequence[tuple[int, float]]], window: int
) -> dict[str, np.ndarray]:
    """Per instrument, the log returns between the last `window` + 1 candles every instrument has.

    `closes` maps an instrument key to its (open time, close) pairs, oldest first. Only the open
    times all of them share are used, so the series line up in time (as `risk_breakdown` needs);
    a return spans two consecutive shared times.
    """
    if not closes:
        return {}
    shared = set.intersection(*({t for t, _ in pairs} for pairs in closes.values()))
    times = sorted(shared)[-(window + 1):]
    out: dict[str, np.ndarray] = {}
    for key, pairs in closes.items():
        by_time = dict(pairs)
        prices = np.asarray([by_time[t] for t in times], dtype=np.float64)
        out[key] = np.diff(np.log(prices)) if len(prices) > 1 else np.asarray([], dtype=np.float64)
    return out
